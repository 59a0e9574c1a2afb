"""Rule backbone_tables: the registry → BoB's Table 1 (and a per-backbone table)."""

from bobench.tables import write_backbone_tables
from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)
sm = snakemake  # noqa: F821
write_backbone_tables(sm.params.backbones, sm.output.backbones, sm.output.table1_csv, sm.output.table1_md)
log.info("wrote %s", sm.output.table1_md)
