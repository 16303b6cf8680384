"""The `kdstudy` command (`cli.main`): `chain` trains one chain on `trainables` alone; `run`, `report` and `confirm`
drive a study (`study`) and read its results (`analysis`). Nothing below imports it."""
