"""Learning: metrics now; the histogram GBDT stages and the federated estimator build on them."""
