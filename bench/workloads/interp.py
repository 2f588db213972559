# Row 3c's workload: CPython (a real interpreter, compiled to WASI) running small CPU-bound
# kernels that exercise what interpreters spend their time on: the bytecode loop, calls,
# attribute lookups, dicts, strings, allocation and GC, floats, generators. No syscalls but
# startup (reading the packed standard library) and the final print. Each kernel returns a
# checksum; the printed line must be the same instrumented and as built.


# Richards-style scheduler: objects, method dispatch, a run queue of tasks passing packets.
class Packet:
    __slots__ = ("link", "dest", "count")

    def __init__(self, link, dest):
        self.link = link
        self.dest = dest
        self.count = 0


class Task:
    def __init__(self, ident, scheduler):
        self.ident = ident
        self.scheduler = scheduler
        self.inbox = []
        self.handled = 0

    def step(self, packet):
        packet.count += self.ident
        self.handled += 1
        dest = (packet.dest * 7 + self.ident) % len(self.scheduler.tasks)
        packet.dest = dest
        return packet


class Scheduler:
    def __init__(self, tasks):
        self.tasks = [Task(i + 1, self) for i in range(tasks)]

    def run(self, packets, rounds):
        queue = [Packet(None, i % len(self.tasks)) for i in range(packets)]
        for _ in range(rounds):
            nxt = []
            for packet in queue:
                nxt.append(self.tasks[packet.dest].step(packet))
            queue = nxt
        return sum(p.count for p in queue) + sum(t.handled for t in self.tasks)


def richards():
    return Scheduler(10).run(200, 300)


# Recursion: call and return, small ints.
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


# Dicts and strings: build keys, count, join.
def words():
    counts = {}
    for i in range(40000):
        word = "w%d_%s" % ((i * 7919) % 1500, "abc"[i % 3])
        counts[word] = counts.get(word, 0) + 1
    text = ",".join(sorted(counts))
    return len(text) + max(counts.values()) + text.count("_a")


# Allocation and GC: binary trees built and walked.
class Node:
    __slots__ = ("left", "right")

    def __init__(self, left, right):
        self.left = left
        self.right = right


def tree(depth):
    return Node(None, None) if depth == 0 else Node(tree(depth - 1), tree(depth - 1))


def check(node):
    return 1 if node.left is None else 1 + check(node.left) + check(node.right)


def trees():
    return sum(check(tree(d)) for d in range(4, 14, 2))


# Floats: a small Mandelbrot set.
def mandelbrot(size=60, limit=50):
    inside = 0
    for y in range(size):
        ci = 2.0 * y / size - 1.0
        for x in range(size):
            cr = 2.0 * x / size - 1.5
            zr = zi = 0.0
            for _ in range(limit):
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                if zr * zr + zi * zi > 4.0:
                    break
            else:
                inside += 1
    return inside


# Generators, comprehensions and sorting with a key.
def primes():
    n = 2
    while True:
        if all(n % p for p in range(2, int(n**0.5) + 1)):
            yield n
        n += 1


def sorting():
    gen = primes()
    ps = [next(gen) for _ in range(1500)]
    keyed = sorted(ps, key=lambda p: (p % 97, -p))
    return keyed[0] + keyed[-1] + sum(ps[::50])


print(richards(), fib(20), words(), trees(), mandelbrot(), sorting())
