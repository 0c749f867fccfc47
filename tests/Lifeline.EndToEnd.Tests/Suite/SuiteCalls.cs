using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.EndToEnd.Tests.Suite;

/// <summary>The calls the tests make through the gateway, by name.</summary>
public static class SuiteCalls
{
    public static QueueService.QueueServiceClient Queue(this SuiteFixture suite, string? keyName) => new(suite.Grpc(keyName));

    public static RegistryService.RegistryServiceClient Registry(this SuiteFixture suite, string? keyName) => new(suite.Grpc(keyName));

    public static CheckpointService.CheckpointServiceClient Checkpoints(this SuiteFixture suite, string? keyName) => new(suite.Grpc(keyName));

    /// <summary>Enqueues a task over REST (HTTP/1.1) and returns its id.</summary>
    public static async Task<string> EnqueueOverRestAsync(this SuiteFixture suite, string keyName, string type, string payload)
    {
        var body = new JsonObject { ["task"] = new JsonObject { ["type"] = type, ["payload"] = payload } }.ToJsonString();
        using var response = await suite.RestAsync(HttpMethod.Post, "/api/v1/tasks", keyName, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"POST /api/v1/tasks answered {(int)response.StatusCode}: {text}");
        var id = JsonNode.Parse(text)?["task"]?["id"]?.GetValue<string>();
        Assert.False(string.IsNullOrEmpty(id), $"no task id in {text}");
        return id!;
    }

    /// <summary>Reads a task over gRPC with the reader key.</summary>
    public static async Task<Queue.V1.Task> GetTaskAsync(this SuiteFixture suite, string taskId, string keyName = Keys.DefaultReader) =>
        (await suite.Queue(keyName).GetTaskAsync(new GetTaskRequest { TaskId = taskId })).Task;

    /// <summary>True when two JSON texts hold the same value.</summary>
    public static bool SameJson(string? expected, string? actual) =>
        JsonNode.DeepEquals(JsonNode.Parse(expected ?? "null"), JsonNode.Parse(actual ?? "null"));

    public static string Json(object value) => JsonSerializer.Serialize(value);
}
