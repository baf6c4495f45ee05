# Holds a process's memory lock for as long as a stalled FUSE server keeps it (issue 19): maps a file of the mount,
# then (on "go" from stdin) a thread reads the mapped page through /proc/self/mem, which takes the lock for reading
# and waits in the kernel for the server, and the main thread maps memory, which queues for the lock behind it. From
# then on, every reader of this process's /proc/<pid>/cmdline (or environ) blocks too: what a plugin scanning command
# lines would do.
import ctypes
import mmap
import os
import sys
import threading
import time

fd = os.open(sys.argv[1], os.O_RDONLY)
mapped = mmap.mmap(fd, 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
address = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
print("mapped", flush=True)
sys.stdin.readline()


def read_through_mem():
    with open("/proc/self/mem", "rb", buffering=0) as mem:
        mem.seek(address)
        try:
            mem.read(1)
        except OSError:
            pass


threading.Thread(target=read_through_mem, daemon=True).start()
time.sleep(0.5)
print("ready", flush=True)
# Queues for the lock (a new thread would too: its stack is mapped memory).
mmap.mmap(-1, 1 << 20)
while True:
    time.sleep(60)
