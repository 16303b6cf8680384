"""A run's results on storage, torch-free and Ray-free: where a run lives and how its files are written and read
(`runstore.storage`: any local folder or pyarrow URI, atomic writes), and the Parquet layout of its tables
(`runstore.schema`). The study writes through it; `analysis` only reads through it."""
