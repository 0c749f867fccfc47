using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.Recovery.Tests;

/// <summary>One webhook request as the receiver saw it.</summary>
public sealed record ReceivedWebhook(DateTime At, string Path, IReadOnlyDictionary<string, string> Headers, string Body, int AnsweredWith)
{
    public string Header(string name) => Headers.TryGetValue(name.ToLowerInvariant(), out var v) ? v : "";
}

/// <summary>
/// A tiny webhook receiver (Kestrel, HTTP/1.1, 127.0.0.1, a free port) that records every request and
/// answers 200 — or 500 while told to fail (the next N requests, or all of them).
/// </summary>
public sealed class NotificationReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ReceivedWebhook> _received = new();
    private int _failNext;
    private volatile bool _failAll;

    private NotificationReceiver(WebApplication app) => _app = app;

    public string Url(string path = "hook") => $"{BaseAddress}/{path}";

    public string BaseAddress { get; private set; } = "";

    public IReadOnlyList<ReceivedWebhook> Received => [.. _received];

    public static async Task<NotificationReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http1));
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var receiver = new NotificationReceiver(app);
        app.MapPost("/{**path}", async (HttpContext context) =>
        {
            using var reader = new StreamReader(context.Request.Body);
            var body = await reader.ReadToEndAsync();
            var fail = receiver._failAll || Interlocked.Decrement(ref receiver._failNext) >= 0;
            var status = fail ? 500 : 200;
            receiver._received.Enqueue(new ReceivedWebhook(DateTime.UtcNow, context.Request.Path,
                context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()), body, status));
            context.Response.StatusCode = status;
        });
        await app.StartAsync();
        receiver.BaseAddress = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return receiver;
    }

    /// <summary>Answers 500 to the next <paramref name="count"/> requests.</summary>
    public void FailNext(int count) => Interlocked.Exchange(ref _failNext, count);

    /// <summary>Answers 500 to every request until set back.</summary>
    public bool FailAll
    {
        get => _failAll;
        set => _failAll = value;
    }

    /// <summary>Waits until the received requests satisfy <paramref name="condition"/>.</summary>
    public async Task<IReadOnlyList<ReceivedWebhook>> WaitForAsync(Func<IReadOnlyList<ReceivedWebhook>, bool> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (!condition(Received))
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"the webhook receiver did not get what was expected in time; received {Received.Count} request(s)");
            }
            await Task.Delay(25);
        }
        return Received;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
