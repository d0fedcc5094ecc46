#!/usr/bin/env python3
"""Would a second journal flush in flight shorten a ledger append's wait? A simulation on the disk.

    python3 scripts/pipeline_sim.py [ROUNDS] [DIR]   # DIR: a folder on the disk to test (default: .)

Appends arrive at 1,000 a second (evenly spaced, then as a Poisson stream), 6,000 per run. One
writer or two take whatever waits, write it (a 600-byte frame each, as the ledger journal does)
under one lock and `fdatasync` outside it; a batch is acknowledged once its flush and every
earlier batch's are done (in order, as the journal must). Printed per run: the wait from an
append's arrival to its acknowledgement, p50 / p90 / p99 / p99.9, and the number of flushes.
Python's own overhead (about 0.1 ms) is in every figure alike. Nothing here asserts a time;
docs/GATEWAY.md (the eighth session) has what it showed.
"""
import os
import queue
import random
import sys
import threading
import time

SIZE=4<<20
folder=sys.argv[2] if len(sys.argv)>2 else '.'
path=os.path.join(folder,'pipeline_sim.tmp')
fd=os.open(path,os.O_RDWR|os.O_CREAT,0o600); os.ftruncate(fd,0); os.write(fd,b"\0"*SIZE); os.fsync(fd)
buf=os.urandom(600)
def q(lat):
    lat=sorted(lat); f=lambda p: lat[int(p*len(lat))-1]*1000
    return f"p50 {f(.5):.3f} p90 {f(.9):.3f} p99 {f(.99):.3f} p99.9 {f(.999):.3f} ms"
def run(workers, n=6000, rate=1000, poisson=False):
    qu=queue.Queue(); lock=threading.Lock()
    state={'off':0,'seq':0}; batches={}  # seq -> (arrivals, end)
    def worker():
        while True:
            first=qu.get()
            if first is None: qu.put(None); return
            with lock:
                items=[first]
                while True:
                    try:
                        x=qu.get_nowait()
                        if x is None: qu.put(None); break
                        items.append(x)
                    except queue.Empty: break
                os.pwrite(fd,buf*len(items),state['off']); state['off']=(state['off']+600*len(items))%(SIZE-65536)
                seq=state['seq']; state['seq']+=1
            os.fdatasync(fd)
            batches[seq]=(items,time.perf_counter())
    ts=[threading.Thread(target=worker) for _ in range(workers)]
    for t in ts: t.start()
    due=time.perf_counter()+0.01
    for i in range(n):
        while True:
            d=due-time.perf_counter()
            if d<=0: break
            time.sleep(d if d>0.0002 else 0)
        qu.put(due)  # the scheduled time
        due+= random.expovariate(rate) if poisson else 1.0/rate
    qu.put(None)
    for t in ts: t.join()
    lat=[]; ack=0
    for k in sorted(batches):
        items,end=batches[k]; ack=max(ack,end)
        lat+= [ack-a for a in items]
    print(f"workers {workers} {'poisson' if poisson else 'constant'}: {q(lat)}  batches {len(batches)}")
for r in range(int(sys.argv[1]) if len(sys.argv)>1 else 2):
    for pois in (False, True):
        for w in (1,2):
            run(w, poisson=pois)
os.close(fd); os.unlink(path)
