"""SecureBoost for one active party (labels, secret key) and one or more passive parties, as sans-I/O roles.

Per tree, the active party picks the rows the tree grows on (every training row, or a
GOSS sample), encrypts their packed (gradient, hessian) and sends them to every passive
party. Level by level, each passive party returns encrypted bucket sums of its features
for the root and, of each pair of new siblings, the smaller one (``sent_child``), with bins
merged into buckets of at least ``min_bin_rows`` rows in both siblings (``tandem.learn.buckets``);
the active party decrypts them, derives the other sibling as parent minus the sent one over
the same buckets (exact fixed-point integers), joins them with its own histograms and picks each node's
best split exactly as the plaintext reference would over the joined feature list (active
features first, then each passive party's in order). The owner of a passive split is
asked for it (``SplitRequest``) and answers with an opaque split id and the node's
go-left bitmap (it refuses slots an honest active party could not have picked: see
``PassiveBoost``); then every passive party gets each node's decision: a leaf, the go-left
bitmap, or "your own split". Rows are routed through every tree whether or not they grew
it (validation rows, rows GOSS left out), so scores stay current everywhere.

Why here and not in ``tandem.protocols``: the roles are built on the generic role base, the
messages and the framing of ``tandem.protocols``, but every step of them is learning
(gradients, GOSS rounds, histograms, best splits, the tree rules of ``tandem.learn.tree``);
putting that maths under ``protocols`` would make the plaintext reference depend on the
protocol layer. So ``protocols`` stays generic (it imports nothing from ``learn``) and the
roles live with the maths they must stay bit-identical to.

Modules: ``shared`` (states, split decisions, checkpoint, the sibling rule), ``active``
(``ActiveBoost.receive(party, msg)`` returns ``[(party, msg), ...]`` to send; ``awaiting()``
names the parties it waits on), ``passive`` (``PassiveBoost.receive(msg)`` returns the messages
for the active party) and ``predict`` (federated prediction). What each side learns:
docs/privacy.md.
"""
