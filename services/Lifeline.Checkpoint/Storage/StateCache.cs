using Lifeline.Checkpoint.Options;
using Microsoft.Extensions.Options;

namespace Lifeline.Checkpoint.Storage;

/// <summary>
/// Canonical states of recently written checkpoints (least recently used out first, bounded in
/// bytes). Only the write path uses it, as the delta base of the next checkpoint; reads always go to
/// the store and verify, so the cache can never hide corruption.
/// </summary>
public sealed class StateCache(IOptions<CheckpointOptions> options)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, LinkedListNode<(Guid Id, byte[] State)>> _entries = [];
    private readonly LinkedList<(Guid Id, byte[] State)> _order = new();
    private long _bytes;

    public bool TryGet(Guid id, out byte[] state)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(id, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                state = node.Value.State;
                return true;
            }
        }
        state = [];
        return false;
    }

    public void Put(Guid id, byte[] state)
    {
        var limit = options.Value.StateCacheBytes;
        if (state.Length > limit)
        {
            return;
        }
        lock (_gate)
        {
            if (_entries.ContainsKey(id))
            {
                return;
            }
            _entries[id] = _order.AddFirst((id, state));
            _bytes += state.Length;
            while (_bytes > limit && _order.Last is { } last)
            {
                _order.RemoveLast();
                _entries.Remove(last.Value.Id);
                _bytes -= last.Value.State.Length;
            }
        }
    }

    public void Remove(Guid id)
    {
        lock (_gate)
        {
            if (_entries.Remove(id, out var node))
            {
                _order.Remove(node);
                _bytes -= node.Value.State.Length;
            }
        }
    }
}
