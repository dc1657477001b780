"""nbgrader settings for the course (the repository root is the course directory)."""

from cml.instructor.defaults import CELL_TIMEOUT_SECONDS

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "cml-neural-networks"
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

# Keep students' and instructors' stray files out of the release and of grading, and the hidden tests'
# requirement map (source/<assignment>/requirements.toml) out of the release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*",
                             "requirements.toml"]

# The release carries a manifest of its graded cells (ids, points, which hold hidden tests: nothing of their code) in
# the notebook's metadata, for the students' self-check (cml-course check). First: it must see the hidden tests.
c.GenerateAssignment.preprocessors.prepend(["cml.instructor.preprocessors.manifest.WriteManifest"])

# Release notebooks carry no outputs; source notebooks are stored without them as well.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading: one cell may run this long before it is interrupted (seconds).
c.ExecutePreprocessor.timeout = CELL_TIMEOUT_SECONDS
c.Execute.timeout = CELL_TIMEOUT_SECONDS
# Kill each kernel once its notebook has run (all outputs are in) instead of waiting ~3 s for it to exit.
c.Execute.shutdown_kernel = "immediate"

# Feedback shows students their tests' results and points, never the code of hidden tests.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "cml.instructor.preprocessors.feedback.HideTestCode",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# ... as inert HTML: the notebook sanitised, under a Content-Security-Policy that admits only the template's scripts.
c.GenerateFeedback.exporter_class = "cml.instructor.web.inert_html.InertHTMLExporter"
