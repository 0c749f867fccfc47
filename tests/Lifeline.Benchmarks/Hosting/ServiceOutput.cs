namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// What the service process printed: a short tail for start-up failures, and every warning or error
/// it logged during the run (single-line console format), so the report can show them.
/// </summary>
internal sealed class ServiceOutput
{
    private const int TailLines = 60;
    private const int MaxProblems = 200;
    private readonly Queue<string> _tail = new();
    private readonly List<string> _problems = [];
    private readonly object _gate = new();
    private int _problemCount;
    private bool _awaitingMessage;

    public int ProblemCount
    {
        get
        {
            lock (_gate)
            {
                return _problemCount;
            }
        }
    }

    public void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            _tail.Enqueue(line);
            if (_tail.Count > TailLines)
            {
                _tail.Dequeue();
            }

            if (line.StartsWith("warn:", StringComparison.Ordinal) || line.StartsWith("fail:", StringComparison.Ordinal) ||
                line.StartsWith("crit:", StringComparison.Ordinal))
            {
                _problemCount++;
                if (_problems.Count < MaxProblems)
                {
                    _problems.Add(line);
                    _awaitingMessage = line.EndsWith(']');
                }
            }
            else if (_awaitingMessage)
            {
                // The console logger put the message on the next line (a message that starts with a line break).
                _problems[^1] = $"{_problems[^1]} {line.Trim()}";
                _awaitingMessage = false;
            }
        }
    }

    public IReadOnlyList<string> Problems()
    {
        lock (_gate)
        {
            return _problems.ToList();
        }
    }

    public bool Contains(string text)
    {
        lock (_gate)
        {
            return _tail.Any(line => line.Contains(text, StringComparison.OrdinalIgnoreCase));
        }
    }

    public string Tail()
    {
        lock (_gate)
        {
            return _tail.Count == 0 ? "(no output)" : string.Join('\n', _tail);
        }
    }
}
