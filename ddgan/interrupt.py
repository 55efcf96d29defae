"""Stop requests: SIGINT (Ctrl-C), SIGTERM (what a cluster scheduler sends before it
pre-empts a job) and SIGUSR2 (what SLURM sends a submitit job before its time limit or a
pre-emption) ask a training to finish its current step, save a checkpoint and leave.

A second Ctrl-C leaves at once (KeyboardInterrupt); a second SIGTERM or SIGUSR2 is ignored,
as the save it waits for is under way.
"""
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR2: 140}  # 128 + the signal, as a shell reports it


class TrainingInterrupted(Exception):
    """A training stopped on a signal after saving its checkpoint at `step`."""

    def __init__(self, signum, step, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; "
                         f"checkpoint saved to {checkpoint}")


class StopRequests:
    """While entered, the first SIGINT or SIGTERM sets `signum` instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere (a training started from
    a worker thread) the signals keep their previous behaviour. The previous handlers come
    back on exit.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint "
              f"(Ctrl-C again to leave at once, without one)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
