using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// What every service refuses before a handler runs (ServiceDefaults): undecodable request bytes, NUL
/// characters, timestamps and durations out of range, malformed grpc-timeout, REST bodies with unknown fields
/// or wrong types — each INVALID_ARGUMENT with a BadRequest, never UNKNOWN or INTERNAL, and nothing written.
/// Errors stay small however many items were wrong.
/// </summary>
public sealed class ContractGuardTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static readonly Method<byte[], byte[]> RawEnqueue = new(
        MethodType.Unary, "lifeline.queue.v1.QueueService", "EnqueueTask",
        Marshallers.Create(b => b, b => b), Marshallers.Create(b => b, b => b));

    private static byte[] ValidEnqueue(string type) => new EnqueueTaskRequest { Task = Spec(type) }.ToByteArray();

    public static TheoryData<string, string> MalformedBodies => new()
    {
        { "truncated varint", "08FF" },
        { "field number 0", "0001" },
        { "length past the end", "0A7F0A" },
        { "deep nesting beyond the parser's limit", "" },
    };

    [Theory(Timeout = TestTimeouts.Default)]
    [MemberData(nameof(MalformedBodies))]
    public async Task Undecodable_protobuf_is_INVALID_ARGUMENT_with_a_BadRequest_and_writes_nothing(string name, string hex)
    {
        var before = await env.CountRowsAsync();
        var bytes = name.StartsWith("deep", StringComparison.Ordinal) ? DeepNesting(150) : Convert.FromHexString(hex);

        var ex = await Assert.ThrowsAsync<RpcException>(() => env.Queue.ForTenant().AsyncUnaryCall(RawEnqueue, null, new CallOptions(), bytes).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        var violation = Assert.Single(ex.GetRpcStatus()!.GetDetail<BadRequest>()!.FieldViolations);
        Assert.Equal("(request)", violation.Field);
        Assert.Contains("protobuf", violation.Description, StringComparison.Ordinal);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_trailing_byte_after_a_valid_request_is_refused()
    {
        var bytes = ValidEnqueue(NewType("guard.trailing")).Append((byte)0x08).ToArray();
        var ex = await Assert.ThrowsAsync<RpcException>(() => env.Queue.ForTenant().AsyncUnaryCall(RawEnqueue, null, new CallOptions(), bytes).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.NotNull(ex.GetRpcStatus()!.GetDetail<BadRequest>());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Gzip_that_does_not_inflate_is_INVALID_ARGUMENT_and_a_malformed_grpc_timeout_is_refused()
    {
        using var http = Http2();
        var before = await env.CountRowsAsync();

        var garbage = Encoding.ASCII.GetBytes("this is not gzip at all");
        var (status, details) = await SendRawAsync(http, GrpcFrames.Frame(garbage, compressed: true), ("grpc-encoding", "gzip"));
        Assert.Equal("3", status);
        Assert.NotNull(details?.GetDetail<BadRequest>());

        // A real gzip of a valid request goes through.
        var type = NewType("guard.gzip");
        using (var buffer = new MemoryStream())
        {
            await using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
            {
                gzip.Write(ValidEnqueue(type));
            }
            (status, _) = await SendRawAsync(http, GrpcFrames.Frame(buffer.ToArray(), compressed: true), ("grpc-encoding", "gzip"));
            Assert.Equal("0", status);
        }

        foreach (var timeout in new[] { "abc", "10", "123456789S", "-5S", "5s" })
        {
            (status, details) = await SendRawAsync(http, GrpcFrames.Frame(ValidEnqueue(type), compressed: false), ("grpc-timeout", timeout));
            Assert.True(status == "3", $"grpc-timeout '{timeout}' gave status {status}");
            Assert.Equal("grpc-timeout", Assert.Single(details!.GetDetail<BadRequest>()!.FieldViolations).Field);
        }
        Assert.Equal(before.Tasks + 1, (await env.CountRowsAsync()).Tasks);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_NUL_character_in_any_string_is_refused_naming_the_field_and_other_callers_are_unharmed()
    {
        var type = NewType("guard.nul");
        var before = await env.CountRowsAsync();
        var cases = new (Func<Task> Call, string Field)[]
        {
            (() => Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec("a\0b") }).ResponseAsync, "task.type"),
            (() => Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, "{\"a\":\"x\0y\"}") }).ResponseAsync, "task.payload"),
            (() => Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = WithWorkflow(Spec(type), "w\0") }).ResponseAsync, "task.workflow_id"),
            (() => Client.EnqueueTasksAsync(new EnqueueTasksRequest { Tasks = { new BatchTask { Key = "k\0", Task = Spec(type) } } }).ResponseAsync, "tasks[0].key"),
            (() => Client.GetTaskAsync(new GetTaskRequest { TaskId = "\0" }).ResponseAsync, "task_id"),
        };

        // Clean calls race the poisoned ones on the same pooled connections: every clean call succeeds.
        var clean = Enumerable.Range(0, 40).Select(i => Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) }).ResponseAsync).ToList();
        foreach (var (call, field) in cases)
        {
            var ex = await Assert.ThrowsAsync<RpcException>(call);
            Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
            Assert.Contains(field, ex.GetRpcStatus()!.GetDetail<BadRequest>()!.FieldViolations.Select(v => v.Field));
        }
        await Task.WhenAll(clean);
        Assert.Equal(before.Tasks + 40, (await env.CountRowsAsync()).Tasks);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Timestamps_and_durations_out_of_range_are_INVALID_ARGUMENT()
    {
        var type = NewType("guard.time");
        var before = await env.CountRowsAsync();
        var badTimestamps = new[]
        {
            new Timestamp { Seconds = -62_135_596_801 }, new Timestamp { Seconds = 253_402_300_800 },
            new Timestamp { Seconds = 0, Nanos = -1 }, new Timestamp { Seconds = 0, Nanos = 1_000_000_000 },
        };
        foreach (var at in badTimestamps)
        {
            var spec = Spec(type);
            spec.NotBefore = at;
            var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = spec }).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
            Assert.Contains("task.not_before", ex.GetRpcStatus()!.GetDetail<BadRequest>()!.FieldViolations.Select(v => v.Field));
        }
        var badDurations = new[]
        {
            new Duration { Seconds = 1, Nanos = -1 }, new Duration { Seconds = -1, Nanos = 1 },
            new Duration { Seconds = 315_576_000_001 }, new Duration { Nanos = 1_000_000_000 },
        };
        foreach (var interval in badDurations)
        {
            var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EnqueueTaskAsync(new EnqueueTaskRequest
            {
                Task = Spec(type, retry: new RetryPolicy { InitialInterval = interval }),
            }).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
            Assert.Contains("task.retry_policy.initial_interval", ex.GetRpcStatus()!.GetDetail<BadRequest>()!.FieldViolations.Select(v => v.Field));
        }
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Thousands_of_violations_give_a_small_answer_listing_twenty_and_counting_the_rest()
    {
        var request = new EnqueueTasksRequest();
        request.Tasks.AddRange(Enumerable.Range(0, 2000).Select(i => new BatchTask { Key = $"k{i}", Task = Spec($"bad type {i}\0") }));
        var before = await env.CountRowsAsync();

        var ex = await Assert.ThrowsAsync<RpcException>(() => Client.EnqueueTasksAsync(request).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        var status = ex.GetRpcStatus()!;
        Assert.True(status.FieldViolationsCount() <= 20, $"{status.FieldViolationsCount()} violations listed");
        Assert.True(status.CalculateSize() < 8 * 1024, $"status of {status.CalculateSize()} bytes");
        Assert.True(ex.Status.Detail.Length <= 1001, $"grpc-message of {ex.Status.Detail.Length} characters");
        Assert.True(int.Parse(status.GetDetail<ErrorInfo>()!.Metadata["violations_total"], System.Globalization.CultureInfo.InvariantCulture) >= 2000);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_refuses_unknown_and_misspelled_fields_wrong_types_and_bad_json_naming_them_and_writes_nothing()
    {
        using var http = Http2();
        var type = NewType("guard.rest");
        var before = await env.CountRowsAsync();
        var cases = new (string Body, string Field, string Says)[]
        {
            ("""{"task":{"type":"TYPE","maxRetrys":9,"priorty":7}}""".Replace("TYPE", type), "task.maxRetrys", "not a field"),
            ("""{"noSuchField":1,"task":{"type":"TYPE"}}""".Replace("TYPE", type), "noSuchField", "not a field"),
            ("""{"task":{"type":"TYPE","priority":"high"}}""".Replace("TYPE", type), "", ""), // a string that is not a number: the transcoder's own refusal
            ("""{"task":{"type":{"a":1}}}""", "task.type", "JSON string"),
            ("""{"task":{"type":"TYPE","retryPolicy":[1]}}""".Replace("TYPE", type), "task.retryPolicy", "JSON object"),
            ("""{"task": {"type": "x",""", "(body)", "not valid JSON"),
            (new string('[', 100) + new string(']', 100), "(body)", "not valid JSON"),
        };
        foreach (var (body, field, says) in cases)
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/api/v1/tasks", content);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{body} → {(int)response.StatusCode} {text}");
            if (field.Length > 0)
            {
                using var json = JsonDocument.Parse(text);
                var violations = json.RootElement.GetProperty("details").EnumerateArray()
                    .Where(d => d.TryGetProperty("fieldViolations", out _))
                    .SelectMany(d => d.GetProperty("fieldViolations").EnumerateArray())
                    .Select(v => (v.GetProperty("field").GetString(), v.GetProperty("description").GetString()!))
                    .ToList();
                Assert.Contains(violations, v => v.Item1 == field && v.Item2.Contains(says, StringComparison.Ordinal));
            }
        }
        using (var response = await http.GetAsync("/api/v1/tasks?pageSize=5&noSuchFilter=1"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("noSuchFilter", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        // What the transcoder refuses itself (an unknown enum name) has a BadRequest too, carrying its message.
        using (var response = await http.GetAsync("/api/v1/tasks?status=NO_SUCH_STATUS"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            var violation = json.RootElement.GetProperty("details").EnumerateArray()
                .Single(d => d.TryGetProperty("fieldViolations", out _)).GetProperty("fieldViolations")[0];
            Assert.Equal("(request)", violation.GetProperty("field").GetString());
            Assert.Contains("NO_SUCH_STATUS", violation.GetProperty("description").GetString(), StringComparison.Ordinal);
        }
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Rest_writes_64_bit_integers_as_JSON_strings()
    {
        using var http = Http2();
        var type = NewType("guard.int64");
        var task = (await Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) })).Task;
        var worker = Guid.NewGuid().ToString();
        await Client.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = worker, TaskTypes = { type }, MaxTasks = 1 });

        using var response = await http.GetAsync($"/api/v1/tasks/{task.Id}");
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(JsonValueKind.String, json.RootElement.GetProperty("task").GetProperty("fencingToken").ValueKind);
    }

    // ---- helpers ----

    private HttpClient Http2() => env.Queue.Rest();

    // An unknown field 15 as groups nested <paramref name="depth"/> deep: start-group tags (15 << 3 | 3), then end-group tags.
    private static byte[] DeepNesting(int depth) =>
        [.. Enumerable.Repeat((byte)0x7B, depth), .. Enumerable.Repeat((byte)0x7C, depth)];


    private static async Task<(string? Status, Google.Rpc.Status? Details)> SendRawAsync(HttpClient http, byte[] frame, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/lifeline.queue.v1.QueueService/EnqueueTask")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(frame),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        using var response = await http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        string? Header(string name) =>
            response.TrailingHeaders.TryGetValues(name, out var t) ? t.First()
            : response.Headers.TryGetValues(name, out var h) ? h.First() : null;
        var details = Header("grpc-status-details-bin") is { } bin
            ? Google.Rpc.Status.Parser.ParseFrom(Convert.FromBase64String(bin.PadRight(bin.Length + (4 - bin.Length % 4) % 4, '=')))
            : null;
        return (Header("grpc-status"), details);
    }
}

internal static class StatusDetails
{
    public static int FieldViolationsCount(this Google.Rpc.Status status) => status.GetDetail<BadRequest>()?.FieldViolations.Count ?? 0;
}
