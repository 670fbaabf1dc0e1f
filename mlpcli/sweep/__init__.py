"""`mlp sweep`: many runs of one config over a search space and seeds, on local cores or a Dask cluster."""
