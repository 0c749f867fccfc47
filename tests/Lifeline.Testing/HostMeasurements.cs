using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Testing;

/// <summary>
/// What one service host's Meter (named <c>meterName</c>, created by the host's IMeterFactory) records while this
/// lives; the meters of the other hosts of the test process are left out.
/// </summary>
public sealed class HostMeasurements : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, double Value, KeyValuePair<string, object?>[] Tags)> _measurements = new();

    public HostMeasurements(ServiceHost host, string meterName)
    {
        var factory = host.App.Services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == meterName && ReferenceEquals(instrument.Meter.Scope, factory))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => _measurements.Enqueue((i.Name, v, tags.ToArray())));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => _measurements.Enqueue((i.Name, v, tags.ToArray())));
        _listener.Start();
    }

    /// <summary>Reads the observable instruments (gauges) now.</summary>
    public void Observe() => _listener.RecordObservableInstruments();

    /// <summary>Every value of <paramref name="name"/> recorded with all of <paramref name="tags"/>.</summary>
    public IReadOnlyList<double> Values(string name, params (string Key, object? Value)[] tags) =>
        [.. _measurements.Where(m => m.Name == name && tags.All(t => m.Tags.Any(x => x.Key == t.Key && Equals(x.Value, t.Value)))).Select(m => m.Value)];

    public double Sum(string name, params (string Key, object? Value)[] tags) => Values(name, tags).Sum();

    public double Last(string name, params (string Key, object? Value)[] tags) =>
        Values(name, tags) is { Count: > 0 } values ? values[^1] : throw new InvalidOperationException($"nothing recorded for {name}");

    public void Dispose() => _listener.Dispose();
}
