using Lifeline.Testing.Internal;

namespace Lifeline.Testing.Tests;

/// <summary>
/// Test assemblies run in parallel, and each sweeps the temp directory for servers a dead run left behind.
/// A sweep must never take a live run's directory, not even one whose marker is being written.
/// </summary>
public sealed class OwnerMarkerTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("lifeline-marker-tests-").FullName;

    [Fact(Timeout = TestTimeouts.Default)]
    public Task A_marker_being_written_by_another_process_is_not_taken_for_an_orphan()
    {
        var fresh = Directory.CreateDirectory(Path.Combine(_root, "lifeline-redis-fresh")).FullName;
        File.WriteAllText(Path.Combine(fresh, "owner.pid"), ""); // what a reader saw between create and write
        var dead = Directory.CreateDirectory(Path.Combine(_root, "lifeline-redis-dead")).FullName;
        File.WriteAllText(Path.Combine(dead, "owner.pid"), "2147483000 1\n");
        var mine = Directory.CreateDirectory(Path.Combine(_root, "lifeline-redis-mine")).FullName;
        OwnerMarker.Write(mine);

        Assert.Equal([dead], OwnerMarker.FindOrphans(_root, "lifeline-redis-*").ToArray());
        Assert.False(File.Exists(Path.Combine(mine, "owner.pid.partial")));
        return Task.CompletedTask;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Markers_rewritten_while_another_sweeps_are_never_read_half_written()
    {
        var directory = Directory.CreateDirectory(Path.Combine(_root, "lifeline-redis-busy")).FullName;
        OwnerMarker.Write(directory);
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        var writer = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                OwnerMarker.Write(directory);
            }
        });
        var seen = 0;
        while (!stop.IsCancellationRequested)
        {
            var text = File.ReadAllText(Path.Combine(directory, "owner.pid"));
            Assert.Matches(@"^\d+ \d+\n$", text);
            seen++;
        }

        await writer;
        Assert.True(seen > 100, $"only {seen} reads raced the writer");
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
