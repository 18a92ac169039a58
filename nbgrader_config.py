"""nbgrader configuration: the repository root is the course root.

Masters live in ``solutions/<id>/<id>.ipynb`` (nbgrader's source directory) and the generated
student release in ``course/<id>/<id>.ipynb`` (its release directory). Grading work folders
(submitted, autograded, feedback) and the gradebook stay out of git (see .gitignore).
"""

c = get_config()  # noqa: F821 - injected by traitlets when nbgrader loads this file

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
c.CourseDirectory.course_id = "lossutils"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
# Generous per-cell limit for stock nbgrader; `lossutils grade` sets its own (--timeout).
c.Execute.timeout = 120
c.ExecutePreprocessor.timeout = 120
