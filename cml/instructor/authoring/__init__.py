"""Writing the course: notebooks as scripts, and the student release built and checked with nbgrader."""
