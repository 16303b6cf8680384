"""Analysis of a kdstudy run, from its Parquet results alone (no torch, no Ray): `analysis.load.load_run`,
Pareto fronts (`analysis.pareto`), rankings (`analysis.ranking`), the error avalanche (`analysis.avalanche`),
figures (`analysis.plots`) and the report (`analysis.report`). `runstore.schema` is the results' layout and
`runstore.storage` reads and writes them on any storage."""
