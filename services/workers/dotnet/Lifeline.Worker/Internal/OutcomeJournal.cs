using System.Text;

namespace Lifeline.Worker.Internal;

/// <summary>
/// The offline journal of one worker: <c>&lt;directory&gt;/&lt;worker name&gt;.journal</c>, JSON lines
/// (<see cref="JournalEntry"/>). An append is written and fsynced before it returns; <see cref="Remove"/> rewrites the
/// file with what is left (to a temporary file, fsynced, renamed over the journal, directory fsynced) or deletes it when
/// nothing is left. The entries are also held in memory, in order; the file is their durable copy. Thread-safe.
/// </summary>
internal sealed class OutcomeJournal
{
    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);
    private readonly Lock _gate = new();
    private readonly List<JournalEntry> _entries = [];
    private readonly TimeProvider _time;
    private long _nextSeq = 1;

    private OutcomeJournal(string directory, string path, TimeProvider time)
    {
        Directory = directory;
        FilePath = path;
        _time = time;
    }

    /// <summary>The journal's directory (absolute).</summary>
    public string Directory { get; }

    /// <summary>The journal file (absolute).</summary>
    public string FilePath { get; }

    /// <summary>Lines of the file that could not be read when it was opened (a line torn by a crash while it was written).</summary>
    public int UnreadableLines { get; private set; }

    /// <summary>Entries waiting to be replayed.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Whether nothing waits to be replayed.</summary>
    public bool IsEmpty => Count == 0;

    /// <summary>
    /// Opens the journal of <paramref name="workerName"/> in <paramref name="directory"/> (relative to the working
    /// directory when not absolute; created on the first append) and reads what an earlier run left in it. A file with
    /// unreadable lines is rewritten at once without them, so later appends start on a clean line.
    /// </summary>
    public static OutcomeJournal Open(string directory, string workerName, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentException.ThrowIfNullOrWhiteSpace(workerName);
        var fullDirectory = Path.GetFullPath(directory);
        var journal = new OutcomeJournal(fullDirectory, Path.Combine(fullDirectory, FileNameFor(workerName)), time ?? TimeProvider.System);
        journal.Load();
        return journal;
    }

    /// <summary>
    /// The file name of a worker's journal: its name with every character that is not a letter, digit, '-', '_' or '.'
    /// replaced by '_', and <c>.journal</c> appended.
    /// </summary>
    public static string FileNameFor(string workerName)
    {
        var name = new StringBuilder(workerName.Length + 8);
        foreach (var c in workerName)
        {
            name.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_');
        }

        if (name.Length > 0 && name[0] == '.')
        {
            name[0] = '_'; // never a hidden file, never "." or ".."
        }

        return name.Append(".journal").ToString();
    }

    /// <summary>The entries, oldest first.</summary>
    public IReadOnlyList<JournalEntry> Snapshot()
    {
        lock (_gate)
        {
            return [.. _entries];
        }
    }

    /// <summary>
    /// Numbers <paramref name="entries"/> (<c>seq</c>) and appends them, in one write and one fsync. When this returns,
    /// they survive a crash of the process or the machine. Returns them numbered.
    /// </summary>
    /// <exception cref="IOException">The journal could not be written (the entries are not kept).</exception>
    public IReadOnlyList<JournalEntry> Append(IReadOnlyList<JournalEntry> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0)
        {
            return [];
        }

        lock (_gate)
        {
            var numbered = new List<JournalEntry>(entries.Count);
            var text = new StringBuilder();
            var seq = _nextSeq;
            foreach (var entry in entries)
            {
                var line = entry with { Seq = seq++ };
                numbered.Add(line);
                text.Append(line.ToJsonLine()).Append('\n');
            }

            var created = !File.Exists(FilePath);
            if (created)
            {
                System.IO.Directory.CreateDirectory(Directory);
            }

            using (var file = new FileStream(FilePath, FileMode.Append, FileAccess.Write, FileShare.Read, 4096, FileOptions.None))
            {
                file.Write(Utf8.GetBytes(text.ToString()));
                file.Flush(flushToDisk: true);
            }

            if (created)
            {
                DirectorySync.Flush(Directory);
            }

            _nextSeq = seq;
            _entries.AddRange(numbered);
            return numbered;
        }
    }

    /// <summary>Appends one entry (see <see cref="Append(IReadOnlyList{JournalEntry})"/>).</summary>
    public JournalEntry Append(JournalEntry entry) => Append([entry])[0];

    /// <summary>
    /// Drops the entries numbered <paramref name="seqs"/> (delivered, or refused for good) and compacts the file to what
    /// is left: written to a temporary file, fsynced, renamed over the journal; deleted when nothing is left.
    /// </summary>
    /// <exception cref="IOException">The file could not be rewritten; it still holds every entry (replaying them again is harmless).</exception>
    public void Remove(IReadOnlyCollection<long> seqs)
    {
        ArgumentNullException.ThrowIfNull(seqs);
        if (seqs.Count == 0)
        {
            return;
        }

        lock (_gate)
        {
            var drop = seqs as ISet<long> ?? new HashSet<long>(seqs);
            if (_entries.RemoveAll(e => drop.Contains(e.Seq)) > 0)
            {
                Rewrite();
            }
        }
    }

    /// <summary>The current time, for stamping entries.</summary>
    public DateTimeOffset Now => _time.GetUtcNow();

    private void Load()
    {
        if (!File.Exists(FilePath))
        {
            return;
        }

        var bytes = File.ReadAllBytes(FilePath);
        var text = Utf8.GetString(bytes);
        var unreadable = 0;
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0)
            {
                continue;
            }

            if (JournalEntry.TryParse(line) is { } entry)
            {
                _entries.Add(entry);
            }
            else
            {
                unreadable++;
            }
        }

        // Replay follows the file's order; seq only has to grow from here on.
        _nextSeq = _entries.Count == 0 ? 1 : _entries.Max(e => e.Seq) + 1;
        UnreadableLines = unreadable;
        if (unreadable > 0 || (bytes.Length > 0 && bytes[^1] != (byte)'\n'))
        {
            Rewrite();
        }
    }

    private void Rewrite()
    {
        if (_entries.Count == 0)
        {
            if (File.Exists(FilePath))
            {
                File.Delete(FilePath);
                DirectorySync.Flush(Directory);
            }

            return;
        }

        var temporary = FilePath + ".tmp";
        var text = new StringBuilder();
        foreach (var entry in _entries)
        {
            text.Append(entry.ToJsonLine()).Append('\n');
        }

        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.None))
        {
            file.Write(Utf8.GetBytes(text.ToString()));
            file.Flush(flushToDisk: true);
        }

        File.Move(temporary, FilePath, overwrite: true);
        DirectorySync.Flush(Directory);
    }
}
