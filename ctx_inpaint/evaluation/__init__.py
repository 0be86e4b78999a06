"""Evaluation: image metrics (``metrics``), scoring a model and the classical fills (``baselines``) on held-out photos
(``scoring``, ``run.evaluate``), the tables it writes (``outputs``), and the statistics behind them (``stats``)."""
