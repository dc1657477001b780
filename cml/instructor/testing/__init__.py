"""The instructor's own test tooling: described submissions and the cases that grade them."""
