namespace Lifeline.Worker.Internal;

/// <summary>
/// The worker's connection state machine (<see cref="ConnectionState"/>), fed by the outcome of every call:
/// <list type="table">
/// <item><term>transient failure</term><description>connected → retrying (the clock starts); retrying → offline once
/// <see cref="OfflineAfter"/> has passed since the first failure; syncing → offline.</description></item>
/// <item><term>success</term><description>retrying → connected; offline → syncing. A final refusal counts as a success:
/// the server answered.</description></item>
/// <item><term><see cref="GoOffline"/></term><description>an outcome gave up retrying: connected, retrying or syncing → offline.</description></item>
/// <item><term><see cref="TryCompleteSync"/></term><description>the journal is empty: syncing → connected.</description></item>
/// </list>
/// Every transition calls the listener once, in order, under the monitor's lock (listeners must be quick and must not
/// call back into the monitor's transitions). Thread-safe; time comes from a <see cref="TimeProvider"/>.
/// </summary>
internal sealed class ConnectionMonitor
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly Action<ConnectionState, ConnectionState, string> _changed;
    private TaskCompletionSource _connected = NewSignal();
    private TaskCompletionSource _notJournaling = NewSignal();
    private TaskCompletionSource _offline = NewSignal();
    private long _firstFailure;
    private volatile ConnectionState _state;

    /// <param name="offlineAfter">How long transient failures may go on before the worker goes offline.</param>
    /// <param name="changed">Called on each transition with (previous, current, reason).</param>
    /// <param name="initial">The state to start in: <see cref="ConnectionState.Offline"/> when a journal from an earlier run waits.</param>
    /// <param name="time">The clock; <see cref="TimeProvider.System"/> when null.</param>
    public ConnectionMonitor(TimeSpan offlineAfter, Action<ConnectionState, ConnectionState, string> changed,
        ConnectionState initial = ConnectionState.Connected, TimeProvider? time = null)
    {
        OfflineAfter = offlineAfter;
        _changed = changed;
        _time = time ?? TimeProvider.System;
        _state = initial;
        SetSignals(initial);
    }

    /// <summary>How long transient failures may go on before the worker goes offline.</summary>
    public TimeSpan OfflineAfter { get; }

    /// <summary>The clock's current timestamp, for <see cref="ReportTransientFailure"/>'s call start.</summary>
    public long Timestamp => _time.GetTimestamp();

    /// <summary>The current state.</summary>
    public ConnectionState State => _state;

    /// <summary>Whether new outcomes must go to the journal rather than the network (offline or syncing: the journal keeps their order).</summary>
    public bool Journaling => _state is ConnectionState.Offline or ConnectionState.Syncing;

    /// <summary>Completes when the state is <see cref="ConnectionState.Connected"/> (at once if it is).</summary>
    public Task WhenConnected
    {
        get
        {
            lock (_gate)
            {
                return _connected.Task;
            }
        }
    }

    /// <summary>
    /// Completes when the state is <see cref="ConnectionState.Connected"/> or <see cref="ConnectionState.Retrying"/>
    /// (at once if it is): when the worker may lease. Offline and syncing, it leases nothing.
    /// </summary>
    public Task WhenNotJournaling
    {
        get
        {
            lock (_gate)
            {
                return _notJournaling.Task;
            }
        }
    }

    /// <summary>Completes when the state is <see cref="ConnectionState.Offline"/> (at once if it is).</summary>
    public Task WhenOffline
    {
        get
        {
            lock (_gate)
            {
                return _offline.Task;
            }
        }
    }

    /// <summary>
    /// A call failed transiently. <paramref name="callStarted"/> (a <see cref="TimeProvider.GetTimestamp"/> value) is when
    /// the failed call began: a call that failed by its deadline failed from its start (a black-holed network). Without
    /// it the failure counts from now (a long poll, whose wait is no failure). Returns the state after.
    /// </summary>
    public ConnectionState ReportTransientFailure(string reason, long? callStarted = null)
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            switch (_state)
            {
                case ConnectionState.Connected:
                    _firstFailure = Math.Min(callStarted ?? now, now);
                    MoveTo(ConnectionState.Retrying, reason);
                    break;
                case ConnectionState.Retrying when _time.GetElapsedTime(_firstFailure, now) >= OfflineAfter:
                    MoveTo(ConnectionState.Offline, $"{reason} (failing for {_time.GetElapsedTime(_firstFailure, now).TotalSeconds:0.#} s)");
                    break;
                case ConnectionState.Syncing:
                    MoveTo(ConnectionState.Offline, reason);
                    break;
            }

            return _state;
        }
    }

    /// <summary>A call got an answer (accepted or refused). Returns the state after.</summary>
    public ConnectionState ReportSuccess(string reason = "a call succeeded")
    {
        // The common case, connected already, takes no lock.
        if (_state == ConnectionState.Connected)
        {
            return ConnectionState.Connected;
        }

        lock (_gate)
        {
            switch (_state)
            {
                case ConnectionState.Retrying:
                    MoveTo(ConnectionState.Connected, reason);
                    break;
                case ConnectionState.Offline:
                    MoveTo(ConnectionState.Syncing, reason);
                    break;
            }

            return _state;
        }
    }

    /// <summary>An outcome gave up retrying (or the worker decided so): go offline from any other state.</summary>
    public void GoOffline(string reason)
    {
        lock (_gate)
        {
            if (_state != ConnectionState.Offline)
            {
                MoveTo(ConnectionState.Offline, reason);
            }
        }
    }

    /// <summary>
    /// Syncing → connected, when <paramref name="journalIsEmpty"/> (called under the monitor's lock, so no outcome is
    /// journaled between the check and the transition). False when not syncing or the journal is not empty.
    /// </summary>
    public bool TryCompleteSync(Func<bool> journalIsEmpty, string reason)
    {
        lock (_gate)
        {
            if (_state != ConnectionState.Syncing || !journalIsEmpty())
            {
                return false;
            }

            MoveTo(ConnectionState.Connected, reason);
            return true;
        }
    }

    /// <summary>
    /// Runs <paramref name="journal"/> under the monitor's lock when outcomes must be journaled (offline or syncing), so
    /// the entry cannot slip in after the sync finished. False (nothing run) when connected or retrying.
    /// </summary>
    public bool JournalIfOffline(Action journal)
    {
        lock (_gate)
        {
            if (!Journaling)
            {
                return false;
            }

            journal();
            return true;
        }
    }

    private void MoveTo(ConnectionState next, string reason)
    {
        var previous = _state;
        _state = next;
        SetSignals(next);
        _changed(previous, next, reason);
    }

    private void SetSignals(ConnectionState state)
    {
        if (state == ConnectionState.Connected)
        {
            _connected.TrySetResult();
        }
        else if (_connected.Task.IsCompleted)
        {
            _connected = NewSignal();
        }

        if (state is ConnectionState.Connected or ConnectionState.Retrying)
        {
            _notJournaling.TrySetResult();
        }
        else if (_notJournaling.Task.IsCompleted)
        {
            _notJournaling = NewSignal();
        }

        if (state == ConnectionState.Offline)
        {
            _offline.TrySetResult();
        }
        else if (_offline.Task.IsCompleted)
        {
            _offline = NewSignal();
        }
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
