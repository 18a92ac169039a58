"""Where instructors already grade: LMS grade files, nbgrader's exchange, Gradescope, PrairieLearn.

Adapters at the edge of the grading pipeline, built on what ``lossutils grade`` produces (its
output folder: the nbgrader gradebook, ``results.json``, the feedback pages) and on
:func:`lossutils.grading.run.grade` itself; nothing in :mod:`lossutils.grading` depends on them.

* :mod:`.lms`: ``lossutils export canvas|moodle`` fills an LMS gradebook export;
* :mod:`.exchange`: makes the feedback pages releasable with ``nbgrader release_feedback``;
* :mod:`.gradescope`: ``lossutils gradescope`` builds an autograder zip, and grades inside it;
* :mod:`.prairielearn`: the external grader entry point (``lossutils prairielearn``).

See ``docs/platforms.md``.
"""
