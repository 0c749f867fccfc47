using System.Globalization;
using System.Net;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// How long the .NET garbage collector paused this process (<see cref="GC.GetTotalPauseDuration"/>) and the queue
/// service (its <c>/metrics</c> counter <c>dotnet_gc_pause_time_seconds_total</c>, the System.Runtime meter) during a
/// row, so that a latency row's slowest starts can be told apart from a collector's pause (or shown not to be one).
/// </summary>
internal sealed class GcPauses
{
    private const string ServiceCounter = "dotnet_gc_pause_time_seconds_total";
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    private readonly Uri _service;
    private readonly TimeSpan _clientAtStart;
    private readonly double? _serviceAtStart;

    private GcPauses(Uri service, TimeSpan clientAtStart, double? serviceAtStart)
    {
        _service = service;
        _clientAtStart = clientAtStart;
        _serviceAtStart = serviceAtStart;
    }

    public static async Task<GcPauses> StartAsync(Uri service, CancellationToken ct) =>
        new(service, GC.GetTotalPauseDuration(), await ServiceSecondsAsync(service, ct));

    /// <summary>The pauses since <see cref="StartAsync"/>, as a sentence for the row's note.</summary>
    public async Task<string> DescribeAsync(CancellationToken ct)
    {
        var client = (GC.GetTotalPauseDuration() - _clientAtStart).TotalMilliseconds;
        var service = await ServiceSecondsAsync(_service, ct) is { } now && _serviceAtStart is { } then
            ? ((now - then) * 1000).ToString("0.0", CultureInfo.InvariantCulture) + " ms"
            : "unknown (no /metrics)";
        return string.Create(CultureInfo.InvariantCulture, $"GC pauses during the row (warm-up and window): this process {client:0.0} ms, the queue {service}");
    }

    private static async Task<double?> ServiceSecondsAsync(Uri service, CancellationToken ct)
    {
        try
        {
            // The service's port speaks HTTP/2 only (h2c, prior knowledge).
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(service, "/metrics"))
            {
                Version = HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            };
            using var response = await Http.SendAsync(request, ct);
            response.EnsureSuccessStatusCode();
            var text = await response.Content.ReadAsStringAsync(ct);
            double? sum = null;
            foreach (var line in text.Split('\n'))
            {
                if (!line.StartsWith(ServiceCounter, StringComparison.Ordinal) || line.Length <= ServiceCounter.Length ||
                    line[ServiceCounter.Length] is not (' ' or '{'))
                {
                    continue;
                }
                // "name{labels} value [timestamp]": the value follows the name and its labels (one series per GC kind, summed).
                var rest = line[ServiceCounter.Length..];
                var value = (rest.StartsWith('{') ? rest[(rest.IndexOf('}', StringComparison.Ordinal) + 1)..] : rest).Trim().Split(' ')[0];
                if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
                {
                    sum = (sum ?? 0) + seconds;
                }
            }
            return sum;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }
}
