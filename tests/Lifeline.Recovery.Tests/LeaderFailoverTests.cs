using System.Diagnostics;
using Grpc.Core;
using Lifeline.Recovery.Leadership;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Leadership;

namespace Lifeline.Recovery.Tests;

/// <summary>Leader election between recovery instances (its own environment: it stops the default instance).</summary>
public sealed class LeaderFailoverTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_standby_refuses_to_scan_and_takes_over_within_one_lease_period_when_the_leader_stops()
    {
        var leaderHost = await env.StartRecoveryAsync(new Dictionary<string, string?> { ["Recovery:InstanceId"] = "failover-a" });
        var standbyHost = await env.StartRecoveryAsync(new Dictionary<string, string?> { ["Recovery:InstanceId"] = "failover-b" });
        // The class's own instance may lead; stop it so exactly these two compete.
        await env.Recovery.StopAsync();
        var a = env.RecoveryClient(leaderHost);
        var b = env.RecoveryClient(standbyHost);

        var leading = await InFlightTestSupport.EventuallyAsync(async () =>
        {
            var la = await a.GetLeadershipAsync(new GetLeadershipRequest());
            var lb = await b.GetLeadershipAsync(new GetLeadershipRequest());
            return la.IsLeader ? (object)"a" : lb.IsLeader ? "b" : null;
        }, TimeSpan.FromSeconds(10), "one of the two to lead");
        var (leaderClient, leaderToStop, follower) = (string)leading == "a" ? (a, leaderHost, b) : (b, standbyHost, a);
        var before = await leaderClient.GetLeadershipAsync(new GetLeadershipRequest());

        var notLeader = await Assert.ThrowsAsync<RpcException>(() => follower.RunRecoveryScanAsync(new RunRecoveryScanRequest()).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, notLeader.StatusCode);
        Assert.Equal("NOT_LEADER", notLeader.Reason());

        // Stopping releases the lease; the standby notices at its next attempt (every third of the 1.5 s lease).
        var stopped = Stopwatch.StartNew();
        await leaderToStop.StopAsync();
        var after = await InFlightTestSupport.EventuallyAsync(async () =>
        {
            var l = await follower.GetLeadershipAsync(new GetLeadershipRequest());
            return l.IsLeader ? l : null;
        }, TimeSpan.FromSeconds(5), "the standby to take over");
        Assert.True(stopped.Elapsed < TimeSpan.FromSeconds(1.5 + 0.6), $"took over after {stopped.Elapsed.TotalSeconds:0.00} s");
        Assert.True(after.FencingToken > before.FencingToken);
        var scan = await follower.RunRecoveryScanAsync(new RunRecoveryScanRequest());
        Assert.True(scan.Examined >= 0);
        Assert.Equal(after.FencingToken, await env.ScalarAsync<long>("SELECT term FROM lifeline_leaders WHERE name = 'recovery'"));
        Assert.Equal(after.LeaderInstance, await env.ScalarAsync<string>("SELECT holder FROM lifeline_leaders WHERE name = 'recovery'"));

        // The deposed term can no longer record actions: the fence admits only the running term.
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(env.RecoveryDatabase);
        var log = new InFlight.ActionLog(dataSource);
        var deposed = new LeaderTerm(RecoveryLeadership.Role, before.LeaderInstance, before.FencingToken, DateTime.UtcNow, CancellationToken.None);
        var current = new LeaderTerm(RecoveryLeadership.Role, after.LeaderInstance, after.FencingToken, DateTime.UtcNow, CancellationToken.None);
        var stale = new InFlight.ActionRecord(Guid.NewGuid(), "default", Guid.NewGuid(), "t", "", "TASK_STATUS_RUNNING", "TASK_STATUS_PENDING",
            ActionType.Restart, RecoveryTrigger.WorkerLost, "late write of a deposed leader", Guid.NewGuid().ToString(), null, 7,
            DateTime.UtcNow, DateTime.UtcNow, true, null, before.FencingToken);
        Assert.False(await log.RecordAsync(stale, deposed, CancellationToken.None));
        Assert.False(await log.RecordAsync(stale, current with { Holder = before.LeaderInstance }, CancellationToken.None)); // the term is the holder's
        Assert.True(await log.RecordAsync(stale with { LeaderToken = after.FencingToken }, current, CancellationToken.None));
        Assert.False(await log.RecordAsync(stale with { Id = Guid.NewGuid(), LeaderToken = after.FencingToken }, current, CancellationToken.None)); // one per lease
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM recovery_actions WHERE reason = 'late write of a deposed leader'"));
        Assert.Equal(after.FencingToken, await env.ScalarAsync<long>("SELECT leader_token FROM recovery_actions WHERE reason = 'late write of a deposed leader'"));
    }
}
