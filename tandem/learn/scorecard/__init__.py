"""Federated scorecard (issue 15): binning with weight of evidence (WoE) and information value (IV) for
every feature of every party (deliverable 1), then feature selection, a logistic regression fitted from
aggregates and scorecard points (deliverable 2).

Each party pre-bins its own features locally (``prebin``: quantile edges or categories, each special code
and missing values in bins of their own, every pre-bin holding at least ``min_bin_rows`` training rows).
The label holder's own features go straight to ``optimal.merge_from_counts``. For a passive party's
features the label holder sends the labels once, encrypted (``ActiveBinning``), the passive party
returns the encrypted (events, rows) sum of each pre-bin (``PassiveBinning``), and the label holder merges
pre-bins into final bins by optbinning run on a count replica of those sums: by construction the same
bins, WoE and IV as optbinning on the pooled rows with the same pre-bins. The passive party then learns
which of its pre-bins merge (its final edges) and nothing else. ``tables.BinTable`` holds a feature's
final bins; what each side learns: docs/privacy.md "Scorecard binning".

The regression sees the WoE design matrix ``A = [1, x_1 .. x_p]`` only through ``AᵀA`` and ``Aᵀy``
(``moments.Moments``; the federated run assembles them across the parties, the pooled reference from the
rows), so both give the same coefficients: feature selection by IV, correlation and VIF, one Newton step
of L2-regularised logistic regression from the intercept-only model, then an exact two-parameter
calibration (Platt scaling) of its scores on a share of the label holder's training rows.

Modules: ``options`` (every binning and scorecard option once), ``prebin`` (``Prebins``, ``Layout``),
``optimal`` (the only optbinning import), ``tables`` (``BinTable``), ``shared`` (states, the wire form of
a merge), ``active`` / ``passive`` (the two sans-I/O binning roles); ``moments`` (``Moments``: ``AᵀA``,
``Aᵀy``), ``selection`` (``correlation``, ``vif``, ``select``), ``fit`` (``newton_step``, ``calibrate``,
``Fitted``, ``fit_pooled``), ``points`` (``Scaling``, ``points_table``, ``model_points``, reason codes),
``stability`` (PSI of the score, CSI of a party's own features, traffic lights) and ``labels`` (bin labels
for reports). These are pure numpy: no I/O, no protocol.
"""
