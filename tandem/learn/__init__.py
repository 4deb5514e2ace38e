"""Learning, as plain stages under thin estimators (scikit-learn's HistGradientBoosting layout).

``binning`` -> ``histogram`` (plain, or encrypted in ``secureboost``) -> ``splitting`` -> ``grower``
-> ``tree`` (the one go-left rule and split application) -> ``model_io``. ``boosting`` is the
plaintext estimator, the reference; ``vertical`` the federated one over ``secureboost``'s roles;
``options`` declares every training option once; ``federated`` and ``local`` run training between
nodes; ``metrics`` and ``baselines`` measure it.
"""
