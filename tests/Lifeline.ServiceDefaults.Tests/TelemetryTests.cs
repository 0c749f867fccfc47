using System.Diagnostics;
using System.Net;
using Lifeline.ServiceDefaults.Telemetry;
using Microsoft.AspNetCore.Http;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>The shared telemetry pieces: who may scrape /metrics, trace contexts stored and linked, log scopes.</summary>
public sealed class TelemetryTests
{
    [Theory]
    [InlineData("127.0.0.1", "/metrics", true)]
    [InlineData("::1", "/metrics", true)]
    [InlineData("127.3.4.5", "/metrics", true)]
    [InlineData("10.0.0.7", "/metrics", false)]
    [InlineData("192.168.1.20", "/metrics", false)]
    [InlineData("127.0.0.1", "/metrics/other", false)]
    [InlineData("127.0.0.1", "/health", false)]
    public void Only_a_loopback_caller_gets_the_metrics(string remote, string path, bool answered)
    {
        var context = new DefaultHttpContext();
        context.Request.Path = path;
        context.Connection.RemoteIpAddress = IPAddress.Parse(remote);
        Assert.Equal(answered, PrometheusEndpoint.IsLoopbackScrape(context));
    }

    [Fact]
    public void A_caller_without_an_address_is_not_loopback()
    {
        var context = new DefaultHttpContext();
        context.Request.Path = "/metrics";
        Assert.False(PrometheusEndpoint.IsLoopbackScrape(context));
    }

    [Fact]
    public void A_stored_traceparent_becomes_a_link_and_a_malformed_one_is_ignored()
    {
        using var enqueue = new Activity("enqueue").SetIdFormat(ActivityIdFormat.W3C).Start();
        enqueue.ActivityTraceFlags = ActivityTraceFlags.Recorded;
        var stored = TaskTrace.TraceParentOf(enqueue);
        enqueue.Stop();
        Assert.Equal(enqueue.Id, stored);

        using var lease = new Activity("lease").SetIdFormat(ActivityIdFormat.W3C).Start();
        lease.LinkTo(stored);
        lease.LinkTo("not-a-traceparent");
        lease.LinkTo(null);
        var link = Assert.Single(lease.Links);
        Assert.Equal(enqueue.TraceId, link.Context.TraceId);
        Assert.Equal(enqueue.SpanId, link.Context.SpanId);
        Assert.Null(TaskTrace.TraceParentOf(null));
        using var hierarchical = new Activity("old").SetIdFormat(ActivityIdFormat.Hierarchical).Start();
        Assert.Null(TaskTrace.TraceParentOf(hierarchical)); // only W3C contexts are stored
        using var unsampled = new Activity("unsampled").SetIdFormat(ActivityIdFormat.W3C).Start();
        Assert.Null(TaskTrace.TraceParentOf(unsampled)); // nothing would show the span a link to it points at
    }

    [Fact]
    public void A_task_scope_names_what_it_knows_and_leaves_out_the_rest()
    {
        var id = Guid.NewGuid();
        var full = new TaskScope("acme", id, "w-1");
        Assert.Equal(
            [new("lifeline.tenant", "acme"), new("lifeline.task.id", id.ToString()), new("lifeline.worker.id", "w-1")],
            full.ToList());
        Assert.Equal([new KeyValuePair<string, object?>("lifeline.tenant", "acme")], new TaskScope("acme", Guid.Empty, "").ToList());
        Assert.Equal($"lifeline.tenant=acme, lifeline.task.id={id}, lifeline.worker.id=w-1", full.ToString());
    }
}
