using System.Collections.Concurrent;
using Grpc.Core;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>Failed calls of a scenario: how many, and each distinct failure once (with its count) for the report.</summary>
internal sealed class CallErrors
{
    private const int MaxDistinct = 20;
    private readonly ConcurrentDictionary<string, int> _distinct = new(StringComparer.Ordinal);
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public IReadOnlyList<string> Distinct =>
        _distinct.OrderByDescending(entry => entry.Value).Select(entry => $"{entry.Value}× {entry.Key}").ToList();

    public void Record(string call, RpcException exception) => Record($"{call}: {exception.StatusCode} {exception.Status.Detail}");

    public void Record(string description)
    {
        Interlocked.Increment(ref _count);
        if (_distinct.Count < MaxDistinct || _distinct.ContainsKey(description))
        {
            _distinct.AddOrUpdate(description, 1, (_, n) => n + 1);
        }
    }
}
