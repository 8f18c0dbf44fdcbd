"""The Celery broker's transport: kombu's Redis transport, made to ride out a Redis outage.

With kombu 5.7, a worker that has a task under way (acks_late) while it also waits on BRPOP
for the next one exits when Redis goes away ("Unrecoverable error: AttributeError: 'NoneType'
object has no attribute 'hostname'"). Its cleanup closes the broker channel; the close first
finishes the pending BRPOP read, which fails (the connection is gone) before the channel is
marked closed. The cleanup then detaches the transport from its connection and closes the
channel again, and that second close, putting the running task's message back, finds no
connection details to reconnect with. Here a failed pending read doesn't stop the first close:
the channel is closed once, its messages stay in Redis's unacked set (redelivered after the
visibility timeout, as for a killed worker), and the worker reconnects when Redis is back.

Installed for the redis:// and rediss:// schemes (redis+socket:// included) by
loyaltysms.celery.
"""

from __future__ import annotations

from kombu.transport import redis


class Channel(redis.Channel):
    def close(self):
        if self._in_poll:
            try:
                self._brpop_read()
            except redis.Empty:
                pass
            except self.connection_errors:
                pass  # the read reset _in_poll; what BRPOP would have taken stays in Redis
        super().close()


class Transport(redis.Transport):
    Channel = Channel
