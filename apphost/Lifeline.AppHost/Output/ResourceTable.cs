using System.Globalization;

namespace Lifeline.AppHost.Output;

/// <summary>What a resource is doing, as the table shows it.</summary>
internal enum ResourceState
{
    Pending,
    Starting,
    Healthy,
    Degraded,
    Unhealthy,
    Restarting,
    Stopping,
    Stopped,
    Failed,
}

internal sealed record ResourceRow(string Name, string Url, ResourceState State = ResourceState.Pending, int? Pid = null, int Restarts = 0);

/// <summary>
/// The live table of resources. A change that alters what the table shows prints it again, whole and
/// time-stamped, once changes have settled for a moment (so a burst of them prints one table), and a log read
/// top to bottom tells the story.
/// </summary>
internal sealed class ResourceTable(ConsoleOutput console)
{
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(300);

    private readonly Lock _gate = new();
    private readonly List<ResourceRow> _rows = [];
    private string? _lastPrinted;
    private bool _printScheduled;

    public void Add(string name, string url)
    {
        lock (_gate)
        {
            _rows.Add(new ResourceRow(name, url));
            console.RegisterSource(name);
        }
    }

    public ResourceRow this[string name]
    {
        get
        {
            lock (_gate)
            {
                return _rows.Single(r => r.Name == name);
            }
        }
    }

    /// <summary>Changes a row; the table is printed shortly after unless <paramref name="print"/> is false.</summary>
    public void Update(string name, Func<ResourceRow, ResourceRow> change, bool print = true)
    {
        lock (_gate)
        {
            var index = _rows.FindIndex(r => r.Name == name);
            _rows[index] = change(_rows[index]);
            if (print && !_printScheduled)
            {
                _printScheduled = true;
                _ = Task.Delay(Settle).ContinueWith(_ => Print(force: false), TaskScheduler.Default);
            }
        }
    }

    /// <summary>Prints the table now; with <paramref name="force"/> even if it did not change since it was last printed.</summary>
    public void Print(bool force = true)
    {
        lock (_gate)
        {
            _printScheduled = false;
            PrintIfChanged(force);
        }
    }

    private void PrintIfChanged(bool force)
    {
        string[] header = ["NAME", "STATE", "PID", "URL", "RESTARTS"];
        var cells = _rows.Select(r => new[]
        {
            r.Name,
            r.State.ToString().ToLowerInvariant(),
            r.Pid?.ToString(CultureInfo.InvariantCulture) ?? "-",
            r.Url,
            r.Restarts.ToString(CultureInfo.InvariantCulture),
        }).ToList();
        var widths = Enumerable.Range(0, header.Length)
            .Select(c => cells.Select(row => row[c].Length).Append(header[c].Length).Max())
            .ToArray();
        string Format(string[] row) => string.Join("  ", row.Select((cell, c) => cell.PadRight(widths[c]))).TrimEnd();

        var body = string.Join('\n', cells.Select(Format));
        if (!force && body == _lastPrinted)
        {
            return;
        }

        _lastPrinted = body;
        console.Block(
        [
            $"--- resources at {DateTime.Now:HH:mm:ss} ---",
            "  " + Format(header),
            .. cells.Select(row => "  " + Format(row)),
        ]);
    }
}
