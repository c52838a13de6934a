"""Session files -> ``data_NER/``: the cache store, fitting, the resumable run, result tables, MC_Maze runs."""
