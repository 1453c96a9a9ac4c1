"""ViTAS evolutionary architecture search over a trained superformer (``sslvit search``).

flops.py      FLOPs of a network with ``torch.utils.flop_counter`` (plain attention path)
nsga2.py      non-dominated sorting + crowding distance (NSGA-II survivor selection)
scoring.py    kNN top-1 of a sub-network's inherited weights on a held-out split of the train set
evolution.py  the search state (JSON, resumable) and the generation loop (mutation + crossover)
outputs.py    Pareto table / plot, population history, recipes of the best candidates
run.py        `sslvit search`: train (or load) the superformer, search, write everything
"""
