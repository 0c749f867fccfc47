using System.Diagnostics.Metrics;
using Lifeline.ServiceDefaults.Hosting;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>Counts what the <c>Lifeline.BackgroundWork</c> meter records for one loop (by its name).</summary>
internal sealed class LoopMeter : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly string _loop;
    private readonly List<string> _errorTypes = [];
    private long _passes;
    private long _failures;

    public LoopMeter(string loop)
    {
        _loop = loop;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == BackgroundWorkMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>(OnMeasurement);
        _listener.Start();
    }

    public long Passes => Interlocked.Read(ref _passes);

    public long Failures => Interlocked.Read(ref _failures);

    public IReadOnlyList<string> ErrorTypes
    {
        get
        {
            lock (_errorTypes)
            {
                return [.. _errorTypes];
            }
        }
    }

    private void OnMeasurement(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        string? loop = null, errorType = null;
        foreach (var tag in tags)
        {
            if (tag.Key == BackgroundWorkMetrics.LoopTag)
            {
                loop = tag.Value as string;
            }
            else if (tag.Key == "error.type")
            {
                errorType = tag.Value as string;
            }
        }
        if (loop != _loop)
        {
            return;
        }
        if (instrument.Name == BackgroundWorkMetrics.PassesName)
        {
            Interlocked.Add(ref _passes, value);
        }
        else if (instrument.Name == BackgroundWorkMetrics.FailuresName)
        {
            Interlocked.Add(ref _failures, value);
            lock (_errorTypes)
            {
                _errorTypes.Add(errorType ?? "");
            }
        }
    }

    public void Dispose() => _listener.Dispose();
}
