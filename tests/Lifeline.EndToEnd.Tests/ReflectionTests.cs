using Grpc.Core;
using Lifeline.EndToEnd.Tests.Suite;

namespace Lifeline.EndToEnd.Tests;

/// <summary>grpcurl works against the gateway without proto files: server reflection lists every service.</summary>
[Collection(SuiteCollection.Name)]
public sealed class ReflectionTests(SuiteFixture suite)
{
    private static readonly string[] SuiteServices = ["lifeline.queue.v1.QueueService", "lifeline.registry.v1.RegistryService", "lifeline.checkpoint.v1.CheckpointService"];

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Reflection_v1alpha_through_the_gateway_lists_the_queue_and_registry_services()
    {
        var client = new Grpc.Reflection.V1Alpha.ServerReflection.ServerReflectionClient(suite.Grpc(keyName: null));
        using var call = client.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new Grpc.Reflection.V1Alpha.ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.CompleteAsync();
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var listed = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.All(SuiteServices, name => Assert.Contains(name, listed));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Reflection_v1_through_the_gateway_lists_and_describes_the_queue_service()
    {
        var client = new Grpc.Reflection.V1.ServerReflection.ServerReflectionClient(suite.Grpc(Keys.DefaultReader));
        using var call = client.ServerReflectionInfo();
        await call.RequestStream.WriteAsync(new Grpc.Reflection.V1.ServerReflectionRequest { ListServices = "" });
        await call.RequestStream.WriteAsync(new Grpc.Reflection.V1.ServerReflectionRequest { FileContainingSymbol = "lifeline.queue.v1.QueueService" });
        await call.RequestStream.CompleteAsync();

        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var listed = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.All(SuiteServices, name => Assert.Contains(name, listed));

        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var files = call.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto
            .Select(bytes => Google.Protobuf.Reflection.FileDescriptorProto.Parser.ParseFrom(bytes))
            .ToList();
        var queueFile = Assert.Single(files, f => f.Name == "lifeline/queue/v1/queue.proto");
        Assert.Contains(queueFile.Service.Single().Method, m => m.Name == "LeaseTasks");
    }
}
