"""When results travel together: one batching policy for the worker, its monitor and the manager.

A run of many small tasks is made of per-task overheads (a wake-up, a message, a lock
hand-off), so results travel in batches, but only while batching costs nothing: while more
work is queued than the result could unblock. Whenever nothing waits behind a result (a
chain, the end of a run, a worker with no tasks sent ahead) it travels at once. Three places
apply the same rule, each with a deadline and a size cap (the numbers' measured effect is in
docs/performance.md, "Dispatch"):

1. The worker's monitor reaps a command and gives its slot to the next task at once, but may
   *finish* it (hash and rename its outputs, build its outcome) a moment later, together with
   others, while tasks queue on the worker: at most FINISH_WAIT_S late or FINISH_MAX at once.
2. The worker holds finished outcomes and sends them in one Done message while more than two
   tasks per core wait there: at most SEND_WAIT_S late or SEND_MAX outcomes.
3. The manager hands results to the engine in batches while tasks still wait in its own
   queue: at most HAND_OVER_WAIT_S late or HAND_OVER_MAX results.

A command's start unblocks nothing (the manager only records it), so the worker's monitor
lets the start of a command it spawned wait up to START_WAIT_S for an outcome to leave with:
the next one is usually a command's length away, and a lone Started was half of a worker's
messages in a run of null rules. The wait covers an outcome's own (finished up to
FINISH_WAIT_S late, then held up to SEND_WAIT_S): with SEND_WAIT_S alone a start made just
after a Done left was sent by itself a few milliseconds before the next Done, in a third of
the worker's messages.
"""

FINISH_WAIT_S = 0.008
FINISH_MAX = 32
SEND_WAIT_S = 0.005
START_WAIT_S = FINISH_WAIT_S + SEND_WAIT_S
SEND_MAX = 32
HAND_OVER_WAIT_S = 0.01
HAND_OVER_MAX = 64
