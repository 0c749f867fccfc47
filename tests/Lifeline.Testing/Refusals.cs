using System.Diagnostics;
using System.Text;
using Grpc.Core;
using Xunit;

namespace Lifeline.Testing;

/// <summary>Measures refusals: how long a call took to be refused and what its status costs on the wire.</summary>
public static class Refusals
{
    /// <summary>Runs a call that must fail with <paramref name="code"/>; returns the error and how long the refusal took.</summary>
    public static async Task<(RpcException Error, TimeSpan Elapsed)> TimedAsync(Func<Task> call, StatusCode code)
    {
        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RpcException>(call).ConfigureAwait(false);
        clock.Stop();
        Assert.Equal(code, error.StatusCode);
        return (error, clock.Elapsed);
    }

    /// <summary>
    /// Bytes the status takes in the response's trailers: <c>grpc-message</c> plus every trailer (binary ones as the
    /// base64 they travel in) — what a proxy's header limits see.
    /// </summary>
    public static int WireBytes(this RpcException error)
    {
        var total = Encoding.UTF8.GetByteCount(error.Status.Detail);
        foreach (var entry in error.Trailers)
        {
            total += entry.Key.Length + (entry.IsBinary ? (entry.ValueBytes.Length + 2) / 3 * 4 : Encoding.UTF8.GetByteCount(entry.Value));
        }
        return total;
    }
}
