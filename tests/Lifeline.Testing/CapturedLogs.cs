using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Lifeline.Testing;

/// <summary>
/// A logger provider that keeps what a service host logs, for tests that assert on logging (e.g. that a refusal is
/// not logged as an error). Add it with <c>builder.Logging.AddProvider(logs)</c> in a host's configure callback.
/// </summary>
public sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<Entry> _entries = new();

    /// <summary>One log entry.</summary>
    public sealed record Entry(string Category, LogLevel Level, EventId EventId, string Message, Exception? Exception);

    /// <summary>Everything logged so far, in order.</summary>
    public IReadOnlyList<Entry> Entries => _entries.ToArray();

    /// <summary>Entries at <paramref name="level"/> or above.</summary>
    public IReadOnlyList<Entry> AtLeast(LogLevel level) => _entries.Where(e => e.Level >= level).ToArray();

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, ConcurrentQueue<Entry> entries) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            entries.Enqueue(new Entry(category, logLevel, eventId, formatter(state, exception), exception));
    }
}
