import logging
from sshpipe import SSHPipeHandler

module_logger = logging.getLogger(__file__)

class MySSHPipeHandler(SSHPipeHandler):

    def __init__(self, *args, **kwargs):
        super(MySSHPipeHandler, self).__init__(*args, **kwargs)
        self.file = None

    def atstart(self, received):
        file = "{}{}".format(__file__, ".remote.log")
        self.module_logger.debug("Opening file: {}.".format(file))
        self.file = open(file, 'w')

    def atexit(self, received):
        if self.file is not None:
            self.file.close()
        super(MySSHPipeHandler, self).atexit(received)

    def handle(self, received):
        self.file.write(str(received))

if __name__ == '__main__':
    client = MySSHPipeHandler()
    client.service_loop()
