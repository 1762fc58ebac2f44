"""Verdicts and the measurements they rest on (imports ``problems``, ``optimizers``, no other room).

* :mod:`.metrics` -- 6-DOF alignment to a reference map, FSC, resolution;
* :mod:`.reference` -- the reference optimum of a problem, full-objective
  passes and the scores a run record carries;
* :mod:`.curvature` -- the curvature scale every run hands its optimizer
  (measured once per problem and initial density; the reference's SGD stage
  uses the same number);
* :mod:`.stats` -- paired statistics between leaderboard entries;
* :mod:`.leaderboard` -- entries on disk and their ranking; :mod:`.entry` -- the typed
  entry, checked on read;
* :mod:`.text` -- untrusted text (names, messages, logs) made safe for terminals, Markdown and HTML.
"""
