/**
 * A bounded async queue: messages pushed by a client, pulled by `for await` or `next()`.
 * When full, the oldest entry is dropped and counted, so a stalled consumer never grows memory.
 */

/** An async iterator over pushed values. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiters: Array<(v: IteratorResult<T>) => void> = [];
  private ended = false;
  /** Entries dropped because the queue was full. */
  dropped = 0;

  constructor(private readonly capacity: number, private readonly onClose: () => void = () => {}) {}

  /** Adds a value (drops the oldest when full). */
  push(value: T): void {
    if (this.ended) return;
    const w = this.waiters.shift();
    if (w) return w({ value, done: false });
    if (this.items.length >= this.capacity) {
      this.items.shift();
      this.dropped++;
    }
    this.items.push(value);
  }

  /** Ends the iteration. */
  end(): void {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w({ value: undefined as never, done: true });
    this.onClose();
  }

  /** Stops receiving (alias of end). */
  close(): void {
    this.end();
  }

  /** The next value; rejects after `timeoutMs` or when ended. */
  next(timeoutMs?: number): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    if (this.ended) return Promise.reject(new Error("the stream has ended"));
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waiter = (r: IteratorResult<T>) => {
        if (timer) clearTimeout(timer);
        if (r.done) reject(new Error("the stream has ended"));
        else resolve(r.value);
      };
      this.waiters.push(waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new Error(`nothing arrived within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () =>
        this.next().then(
          (value) => ({ value, done: false }),
          () => ({ value: undefined as never, done: true }),
        ),
      return: async () => {
        this.close();
        return { value: undefined as never, done: true };
      },
    };
  }
}
