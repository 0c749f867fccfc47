/**
 * Collects items that finish together and hands them over as one batch: after at most `maxDelayMs` from the first
 * item of a batch, or as soon as `maxItems` are waiting (README: completions go out as one CompleteTasks, flushed
 * after at most 5 ms or 100 outcomes). `add` resolves when the batch holding the item has been handled.
 */
export class Batcher<T> {
  private pending: { item: T; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly send: (items: T[]) => Promise<void>,
    private readonly options: { maxItems?: number; maxDelayMs?: number } = {},
  ) {}

  get maxItems(): number {
    return this.options.maxItems ?? 100;
  }

  /** Items waiting for their batch to go out. */
  get waiting(): number {
    return this.pending.length;
  }

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      if (this.pending.length >= this.maxItems) {
        void this.flush();
      } else if (this.timer === undefined) {
        this.timer = setTimeout(() => void this.flush(), this.options.maxDelayMs ?? 5);
      }
    });
  }

  /** Sends what is waiting now (in batches of at most maxItems) and waits for every batch still being handled. */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0, this.maxItems);
      const sending = this.send(batch.map((b) => b.item)).then(
        () => batch.forEach((b) => b.resolve()),
        (error) => batch.forEach((b) => b.reject(error)),
      );
      this.inFlight.add(sending);
      void sending.finally(() => this.inFlight.delete(sending));
    }
    await Promise.all([...this.inFlight]);
  }
}
