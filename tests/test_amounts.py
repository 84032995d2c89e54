"""Resource amounts: one rule for what a task holds and whether it fits, everywhere."""

from vinemake.common.amounts import NOTHING, Amounts, Pool, excess, fits, held_by, offered_by
from vinemake.common.spec import Resources


def test_a_task_holds_one_core_unless_it_says_and_nothing_it_leaves_unset():
    assert held_by(Resources()) == Amounts(1.0, 0, 0, 0)
    assert held_by(Resources(cores=0.5, memory_mb=100)) == Amounts(0.5, 100, 0, 0)
    assert offered_by(Resources()) == NOTHING


def test_fractional_cores_fit_despite_rounding():
    free = Pool(Amounts(0.3, 0, 0, 0))
    free.take(Amounts(0.1))
    free.take(Amounts(0.1))
    assert free.fits(Amounts(0.1)) and not free.fits(Amounts(0.2))
    assert fits(Amounts(0.1 + 0.2), Amounts(0.3))


def test_a_pool_gives_back_what_was_taken():
    free = Pool(Amounts(4, 1000, 500, 1))
    free.take(Amounts(2, 600, 0, 1))
    assert free.amounts() == Amounts(2, 400, 500, 0)
    free.give(Amounts(2, 600, 0, 1))
    assert free.amounts() == Amounts(4, 1000, 500, 1)


def test_excess_names_the_first_amount_beyond_and_ignores_unknowns():
    assert excess(Resources(cores=8), Resources(cores=4)) == \
        "needs cores 8 but the largest worker offers 4"
    assert excess(Resources(disk_mb=10), Resources(cores=4)) is None  # disk unknown
    assert excess(Resources(cores=4), Resources(cores=4)) is None
    assert excess(Resources(cores=123456789), Resources(cores=2.5)) == \
        "needs cores 123456789 but the largest worker offers 2.5"
