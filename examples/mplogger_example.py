"""The seed README's MpLogger example: a main process and two children, one set of logs.

    python examples/mplogger_example.py LOGDIR

Each record is printed to stderr in the seed's format and written to LOGDIR:
``main_process.log`` for the main process, ``acrilog.subproc.log`` for the
children. Without LOGDIR a fresh private directory is made (tempfile.mkdtemp).
"""
import logging
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time

from sshpipe import MpLogger


def subproc(limit=1, logger_info=None):
    logger = MpLogger.get_logger(logger_info, name="acrilog.subproc")
    for i in range(limit):
        sleep_time = 0.3 / random.randint(1, 10)
        time.sleep(sleep_time)
        logger.info("proc [%s]: %s/%s - sleep %4.4ssec" % (os.getpid(), i, limit, sleep_time))


if __name__ == "__main__":
    logdir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="mplogger-")

    level_formats = {logging.DEBUG: "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]"
                                    "[ %(module)s.%(funcName)s(%(lineno)d) ]",
                     'default':   "[ %(asctime)s ][ %(levelname)s ][ %(message)s ]",
                     }

    mplogger = MpLogger(logging_level=logging.DEBUG, level_formats=level_formats,
                        datefmt='%Y-%m-%d,%H:%M:%S.%f', logdir=logdir, console=True)
    logger = mplogger.start(name='main_process')

    logger.debug("starting sub processes")
    procs = list()
    for limit in [1, 1]:
        proc = mp.Process(target=subproc, args=(limit, mplogger.logger_info(),))
        procs.append(proc)
        proc.start()

    for proc in procs:
        if proc:
            proc.join(60)

    logger.debug("sub processes completed")

    mplogger.stop()

    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), encoding="utf-8") as log:
            print(f"{os.path.join(logdir, name)}: {sum(1 for _ in log)} lines")
