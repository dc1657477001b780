"""What a grading run says about the class: item analysis and clusters of identical wrong values (``report``),
copy detection (``similarity``), and grade files for the university's LMS (``lms``)."""
