"""Causal probes: change one thing in aligned faces (a region, an everyday edit) and measure how p(fake) moves.

:mod:`.registry` names the interventions (``probe --list``), :mod:`.inputs` reads the faces,
segments each once and draws the pairs, :mod:`.edits` makes each intervention's edited
images, :mod:`.measure` scores them and summarises the change per intervention and class,
:mod:`.pipeline` runs it all and :mod:`.writer` and :mod:`.figure` write the results.
"""
