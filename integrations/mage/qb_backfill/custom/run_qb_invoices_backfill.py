"""The qb_invoices_backfill pipeline's one block: runs qb-invoices-backfill for fecha_inicio..fecha_fin."""
if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom

from qb_backfill.utils.qb_runner import run_backfill


@custom
def run_qb_invoices_backfill(*args, **kwargs):
    """Variables: fecha_inicio, fecha_fin (required); trigger, force (optional)."""
    return run_backfill('qb-invoices-backfill', kwargs)
