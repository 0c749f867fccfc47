using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>The answer for one item of a group: a value, or the refusal/error of that item alone.</summary>
public readonly record struct GroupOutcome<T>(T? Value, Exception? Error)
{
    public static GroupOutcome<T> Of(T value) => new(value, null);

    public static GroupOutcome<T> Refused(Exception error) => new(default, error);
}

/// <summary>How a <see cref="GroupCommit{TItem, TResult}"/> gathers calls.</summary>
/// <param name="Enabled">Off: every call is applied alone, as a group of one, with no limit on concurrency.</param>
/// <param name="MaxItems">The most items one transaction applies.</param>
/// <param name="MaxConcurrentGroups">How many groups of this kind may be in flight at once (each on its own connection).</param>
/// <param name="GroupTimeout">How long one group may take before it is cancelled and its callers get the error
/// (a group has no caller of its own whose deadline would stop it). Null means 60 s.</param>
public sealed record GroupCommitPolicy(bool Enabled = true, int MaxItems = 256, int MaxConcurrentGroups = 2, TimeSpan? GroupTimeout = null)
{
    public TimeSpan Timeout => GroupTimeout ?? TimeSpan.FromSeconds(60);
}

/// <summary>
/// Group commit: concurrent calls of one kind are applied together, in one transaction, each caller still
/// getting its own answer only after that transaction committed.
/// <para>
/// There is no timer. A call that arrives while fewer than <see cref="GroupCommitPolicy.MaxConcurrentGroups"/>
/// groups are in flight leaves at once (so a lone caller waits for nothing but its own transaction); calls
/// that arrive while the groups are busy queue up and leave together, as one group, when a group finishes.
/// The busier the service, the larger the groups — the batching a database's own group commit does for
/// WAL flushes, applied to whole statements.
/// </para>
/// <para>
/// One caller's bad item must not harm the others: <c>apply</c> returns a refusal per item, and when a
/// group fails as a whole with an error that is not a lost connection (a constraint violation caused by one
/// item's data, say), each of its items is applied again alone, so only the item that causes it fails.
/// A caller that cancels while its item still waits is dropped from the queue; once its group has left,
/// the item is applied and the caller's cancellation only stops it waiting for the answer.
/// </para>
/// </summary>
public sealed class GroupCommit<TItem, TResult>
{
    private readonly Func<IReadOnlyList<TItem>, CancellationToken, Task<IReadOnlyList<GroupOutcome<TResult>>>> apply;
    private readonly GroupCommitPolicy policy;
    private readonly Queue<Waiter> waiting = new();
    private readonly Lock gate = new();
    private int inFlight;

    public GroupCommit(Func<IReadOnlyList<TItem>, CancellationToken, Task<IReadOnlyList<GroupOutcome<TResult>>>> apply, GroupCommitPolicy policy)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(policy.MaxItems, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(policy.MaxConcurrentGroups, 1);
        this.apply = apply;
        this.policy = policy;
    }

    /// <summary>Applies <paramref name="item"/> with whatever else is waiting; throws the item's own refusal.</summary>
    public async Task<TResult> RunAsync(TItem item, CancellationToken cancellationToken)
    {
        if (!policy.Enabled)
        {
            return Unwrap((await apply([item], cancellationToken))[0]);
        }
        var waiter = Submit([item])[0];
        await using (cancellationToken.Register(static w => ((Waiter)w!).Answer.TrySetCanceled(), waiter))
        {
            return await waiter.Answer.Task;
        }
    }

    /// <summary>
    /// Applies several items of one caller, queued together so they leave in as few groups as possible; each
    /// answer (value or refusal) comes back on its own.
    /// </summary>
    public async Task<IReadOnlyList<GroupOutcome<TResult>>> RunManyAsync(IReadOnlyList<TItem> items, CancellationToken cancellationToken)
    {
        if (!policy.Enabled)
        {
            var outcomes = new List<GroupOutcome<TResult>>(items.Count);
            foreach (var chunk in items.Chunk(policy.MaxItems))
            {
                outcomes.AddRange(await apply(chunk, cancellationToken));
            }
            return outcomes;
        }
        var waiters = Submit(items);
        await using (cancellationToken.Register(static ws =>
        {
            foreach (var w in (Waiter[])ws!)
            {
                w.Answer.TrySetCanceled();
            }
        }, waiters))
        {
            var answers = new GroupOutcome<TResult>[waiters.Length];
            for (var i = 0; i < waiters.Length; i++)
            {
                try
                {
                    answers[i] = GroupOutcome<TResult>.Of(await waiters[i].Answer.Task);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    throw;
                }
                catch (Exception error)
                {
                    answers[i] = GroupOutcome<TResult>.Refused(error);
                }
            }
            return answers;
        }
    }

    private Waiter[] Submit(IReadOnlyList<TItem> items)
    {
        var waiters = items.Select(item => new Waiter(item)).ToArray();
        var leads = 0;
        lock (gate)
        {
            foreach (var waiter in waiters)
            {
                waiting.Enqueue(waiter);
            }
            // Enough drains for the queued items, within the limit of groups in flight.
            while (inFlight < policy.MaxConcurrentGroups && leads * policy.MaxItems < waiters.Length)
            {
                inFlight++;
                leads++;
            }
        }
        for (var i = 0; i < leads; i++)
        {
            // The drain runs on the pool, not on this caller's stack: the caller's cancellation must not stop
            // a group that carries other callers' items.
            _ = Task.Run(DrainAsync, CancellationToken.None);
        }
        return waiters;
    }

    private async Task DrainAsync()
    {
        while (true)
        {
            var group = new List<Waiter>();
            lock (gate)
            {
                while (group.Count < policy.MaxItems && waiting.TryDequeue(out var next))
                {
                    // Dropped: its caller cancelled before the group left.
                    if (!next.Answer.Task.IsCompleted)
                    {
                        group.Add(next);
                    }
                }
                if (group.Count == 0)
                {
                    inFlight--;
                    return;
                }
            }
            await ApplyAsync(group);
        }
    }

    private async Task ApplyAsync(List<Waiter> group)
    {
        using var timeout = new CancellationTokenSource(policy.Timeout);
        IReadOnlyList<GroupOutcome<TResult>> outcomes;
        try
        {
            outcomes = await apply(group.Select(w => w.Item).ToList(), timeout.Token);
        }
        catch (Exception ex) when (group.Count > 1 && !IsConnectionLoss(ex))
        {
            // Which item caused it is unknown: apply each alone, so only that one fails.
            foreach (var waiter in group)
            {
                try
                {
                    using var alone = new CancellationTokenSource(policy.Timeout);
                    Answer(waiter, (await apply([waiter.Item], alone.Token))[0]);
                }
                catch (Exception single)
                {
                    waiter.Answer.TrySetException(single);
                }
            }
            return;
        }
        catch (Exception ex)
        {
            // A group cancelled by its time limit is a store that does not answer: say so (UNAVAILABLE, retryable).
            var error = ex is OperationCanceledException && timeout.IsCancellationRequested
                ? new TimeoutException($"The store did not commit the group within {policy.Timeout.TotalSeconds:0} s.", ex)
                : ex;
            foreach (var waiter in group)
            {
                waiter.Answer.TrySetException(error);
            }
            return;
        }
        if (outcomes.Count != group.Count)
        {
            // A bug of the apply function: no caller may wait for ever on it, and the drain must go on.
            var error = new InvalidOperationException($"A group of {group.Count} got {outcomes.Count} answers.");
            foreach (var waiter in group)
            {
                waiter.Answer.TrySetException(error);
            }
            return;
        }
        for (var i = 0; i < group.Count; i++)
        {
            Answer(group[i], outcomes[i]);
        }
    }

    private static void Answer(Waiter waiter, GroupOutcome<TResult> outcome)
    {
        if (outcome.Error is { } error)
        {
            waiter.Answer.TrySetException(error);
        }
        else
        {
            waiter.Answer.TrySetResult(outcome.Value!);
        }
    }

    private static TResult Unwrap(GroupOutcome<TResult> outcome) => outcome.Error is { } error
        ? throw error
        : outcome.Value!;

    /// <summary>A failure no item caused: repeating the items one by one would only fail again, slower.</summary>
    /// (A terminated backend, a server shutting down, a broken socket, a timeout — not a data error such as 22P02 or 23505.)
    private static bool IsConnectionLoss(Exception ex) => ex switch
    {
        NpgsqlException npgsql => npgsql.IsTransient || npgsql.InnerException is IOException or System.Net.Sockets.SocketException or TimeoutException,
        TimeoutException or IOException or OperationCanceledException => true,
        _ => false,
    };

    private sealed class Waiter(TItem item)
    {
        public TItem Item { get; } = item;

        public TaskCompletionSource<TResult> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
