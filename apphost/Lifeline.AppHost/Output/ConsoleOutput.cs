namespace Lifeline.AppHost.Output;

/// <summary>
/// Everything goes to stdout, one whole line at a time, so the apphost's messages, the resource table and
/// the children's output interleave readably in a terminal or a log file. Lines are prefixed with their
/// source, padded to the longest source name: <c>[queue   ] …</c>.
/// </summary>
internal sealed class ConsoleOutput
{
    public const string AppHostSource = "apphost";

    private readonly Lock _gate = new();
    private int _prefixWidth = AppHostSource.Length;

    /// <summary>Widens the prefix so every source's lines line up.</summary>
    public void RegisterSource(string name)
    {
        lock (_gate)
        {
            _prefixWidth = Math.Max(_prefixWidth, name.Length);
        }
    }

    public void Line(string source, string text)
    {
        lock (_gate)
        {
            Console.Out.WriteLine($"[{source.PadRight(_prefixWidth)}] {text}");
        }
    }

    public void Info(string text) => Line(AppHostSource, text);

    public void Error(string text)
    {
        foreach (var line in text.Split('\n'))
        {
            Line(AppHostSource, "error: " + line.TrimEnd('\r'));
        }
    }

    /// <summary>Several lines that must not be split by other output (the resource table).</summary>
    public void Block(IEnumerable<string> lines)
    {
        lock (_gate)
        {
            foreach (var line in lines)
            {
                Console.Out.WriteLine($"[{AppHostSource.PadRight(_prefixWidth)}] {line}");
            }
        }
    }
}
