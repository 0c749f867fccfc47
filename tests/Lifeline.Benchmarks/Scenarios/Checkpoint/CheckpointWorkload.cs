using System.Text.Json;
using Lifeline.Checkpoint.V1;

namespace Lifeline.Benchmarks.Scenarios.Checkpoint;

/// <summary>
/// A workflow's state as a running workflow changes it: a context of random text values (about
/// <c>stateBytes</c> in all, 240 characters each) of which 1% changes between checkpoints.
/// </summary>
internal sealed class CheckpointWorkload
{
    private const int ValueLength = 240;
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    private readonly Random _random;
    private readonly string[] _keys;
    private readonly Dictionary<string, string> _context;
    private int _step;

    public CheckpointWorkload(int stateBytes, int seed)
    {
        _random = new Random(seed);
        var count = Math.Max(4, stateBytes / (ValueLength + 14)); // "k0000001":"…", per entry
        _keys = Enumerable.Range(0, count).Select(i => $"k{i:D7}").ToArray();
        _context = _keys.ToDictionary(k => k, _ => RandomText(ValueLength));
    }

    /// <summary>The current state (the first call returns the initial one; every later call changes 1% of the values first).</summary>
    public CheckpointState Next()
    {
        if (_step++ > 0)
        {
            for (var i = 0; i < Math.Max(1, _keys.Length / 100); i++)
            {
                _context[_keys[_random.Next(_keys.Length)]] = RandomText(ValueLength);
            }
        }

        var state = new CheckpointState
        {
            Workflow = new WorkflowState { CurrentPhase = 1, Status = "running" },
            Context = JsonSerializer.Serialize(_context),
            MessageBusState = new MessageBusState { LastProcessedId = $"m-{_step}" },
        };
        state.AgentStates["worker"] = $$"""{"step":{{_step}}}""";
        return state;
    }

    public static CreateCheckpointRequest Request(string workflowId, CheckpointState state, int step) => new()
    {
        WorkflowId = workflowId,
        Name = $"step {step}",
        Type = CheckpointType.Auto,
        Phase = 1,
        State = state,
    };

    private string RandomText(int length) => string.Create(length, _random, (span, r) =>
    {
        for (var i = 0; i < span.Length; i++)
        {
            span[i] = Alphabet[r.Next(Alphabet.Length)];
        }
    });
}
