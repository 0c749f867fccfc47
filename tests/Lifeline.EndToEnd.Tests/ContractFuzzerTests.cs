using System.Text;
using Google.Protobuf;
using Lifeline.EndToEnd.Tests.Fuzzing;
using Xunit.Abstractions;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// The fuzz generator itself, without the suite: it covers every RPC and route, its baselines are valid requests, what it
/// calls unparseable is unparseable for protobuf's own parsers, and a seed always selects the same cases.
/// </summary>
public sealed class ContractFuzzerTests(ITestOutputHelper output)
{
    private static readonly ContractFuzzer Fuzzer = ContractFuzzer.FromContracts();

    // JSON is UTF-8: bytes that are not are a refusal, as they are for a UTF-8 JSON reader.
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    [Fact(Timeout = 60_000)]
    public async Task Every_rpc_gets_grpc_and_framing_cases_and_every_rest_route_gets_rest_cases()
    {
        await Task.Yield();
        output.WriteLine($"{Fuzzer.AllCases.Count} cases ({Fuzzer.FirstRound} in the first round) for {Fuzzer.Catalog.Methods.Count} RPCs and {Fuzzer.RestRoutes} REST routes; " +
            string.Join(", ", Fuzzer.AllCases.GroupBy(c => c.Transport).Select(g => $"{g.Key} {g.Count()} ({g.Count(c => c.Heavy)} heavy)")));
        foreach (var rpc in Fuzzer.Catalog.Methods.Values)
        {
            var cases = Fuzzer.AllCases.Where(c => c.Rpc.FullName == rpc.FullName).ToList();
            Assert.Contains(cases, c => c.Transport == FuzzTransport.Grpc && c.Family.StartsWith("wire.", StringComparison.Ordinal));
            Assert.Contains(cases, c => c.Transport == FuzzTransport.Framing);
            foreach (var route in rpc.HttpRoutes)
            {
                Assert.Contains(cases, c => c.Route == $"{route.HttpMethod} {route.Template}");
            }

            // Every field of the request is attacked over gRPC.
            foreach (var path in FieldPath.Walk(rpc.Descriptor.InputType))
            {
                Assert.True(cases.Any(c => c.Transport == FuzzTransport.Grpc && c.Field == path.Name) || FieldPath.KindOf(path.Leaf) == FieldKind.Message,
                    $"{rpc.FullName}: no gRPC case for {path.Name}");
            }
        }
    }

    [Fact(Timeout = 60_000)]
    public async Task Baselines_are_valid_requests_in_protobuf_and_proto3_json()
    {
        await Task.Yield();
        var baseline = new Baseline(ContractFuzzer.Marker("test", 1), new Random(1), DateTimeOffset.FromUnixTimeSeconds(1_800_000_000));
        foreach (var rpc in Fuzzer.Catalog.Methods.Values)
        {
            var request = rpc.Descriptor.InputType;
            Assert.NotNull(request.Parser.ParseFrom(ProtobufComposer.BaselineMessage(request, baseline)));
            var json = JsonComposer.Compose(request, baseline).ToJsonString();
            JsonParser.Default.Parse(json, request);
        }
    }

    [Fact(Timeout = 120_000)]
    public async Task What_the_generator_expects_refused_is_refused_by_protobufs_own_parsers()
    {
        await Task.Yield();
        var baselineOf = new Func<FuzzCase, Baseline>(c => new Baseline(ContractFuzzer.Marker("test", c.Id), new Random(c.Id), DateTimeOffset.FromUnixTimeSeconds(1_800_000_000)));
        var wrong = new List<string>();
        foreach (var fuzzCase in Fuzzer.AllCases.Where(c => !c.Heavy && c.Expectation == FuzzExpectation.Refusal))
        {
            var request = fuzzCase.Build(baselineOf(fuzzCase));
            var descriptor = fuzzCase.Rpc.Descriptor.InputType;
            switch (request)
            {
                case GrpcRequest grpc:
                    // The attacked message is the last (on a stream it may follow a valid opening).
                    if (TryParse(() => descriptor.Parser.ParseFrom(grpc.Messages[^1])))
                    {
                        wrong.Add($"{fuzzCase}: parses as protobuf");
                    }

                    break;
                case RestRequest { Body: { } body } when !fuzzCase.Family.StartsWith("rest.query", StringComparison.Ordinal):
                    if (TryParse(() => JsonParser.Default.Parse(StrictUtf8.GetString(body), descriptor)))
                    {
                        wrong.Add($"{fuzzCase}: parses as proto3 JSON");
                    }

                    break;
            }
        }

        Assert.True(wrong.Count == 0, $"{wrong.Count} cases expected refused are accepted by protobuf's parsers:\n{string.Join('\n', wrong.Take(50))}");
    }

    [Fact(Timeout = 60_000)]
    public async Task A_bidirectional_stream_is_attacked_after_a_valid_opening_and_the_matrix_sends_every_kind_of_message()
    {
        await Task.Yield();
        var dispatch = Fuzzer.Catalog.Methods["lifeline.queue.v1.QueueService/Dispatch"];
        var opening = new Dictionary<string, string>(StringComparer.Ordinal) { ["worker_id"] = "opener", ["task_types"] = "opener.type" };
        var cases = Fuzzer.AllCases.Where(c => c.Rpc.FullName == dispatch.FullName && c.Transport == FuzzTransport.Grpc && c.Field != "-" && !c.Heavy).ToList();
        foreach (var fuzzCase in cases)
        {
            var baseline = new Baseline(ContractFuzzer.Marker("test", fuzzCase.Id), new Random(fuzzCase.Id), DateTimeOffset.UtcNow) { Opening = opening };
            var messages = ((GrpcRequest)fuzzCase.Build(baseline)).Messages;
            if (fuzzCase.Field.StartsWith("open", StringComparison.Ordinal) || fuzzCase.Field == "request_id")
            {
                Assert.Single(messages);
                continue;
            }

            Assert.Equal(2, messages.Count);
            var open = Queue.V1.DispatchRequest.Parser.ParseFrom(messages[0]);
            Assert.Equal(Queue.V1.DispatchRequest.KindOneofCase.Open, open.KindCase);
            Assert.Equal("opener", open.Open.WorkerId);
            Assert.Equal(["opener.type"], open.Open.TaskTypes);
        }
        Assert.Contains(cases, c => c.Field.StartsWith("complete.", StringComparison.Ordinal));

        var session = ProtobufComposer.Session(dispatch.Descriptor, new Baseline("o", new Random(1), DateTimeOffset.UtcNow) { Fixed = opening },
            new Baseline("t", new Random(2), DateTimeOffset.UtcNow) { Fixed = new Dictionary<string, string> { ["task_id"] = "target" } });
        var kinds = session.Select(m => Queue.V1.DispatchRequest.Parser.ParseFrom(m)).ToList();
        Assert.Equal(["Open", "Capacity", "Complete", "Fail", "Progress", "ExtendLease", "Release"], kinds.Select(k => k.KindCase.ToString()));
        Assert.Equal("target", kinds[2].Complete.TaskId);
    }

    [Fact(Timeout = 60_000)]
    public async Task A_seed_selects_the_same_cases_and_spreads_the_budget_over_every_rpc()
    {
        await Task.Yield();
        var first = Fuzzer.Select(ContractFuzzer.DefaultCases, 42).Select(c => c.Id).ToList();
        var second = Fuzzer.Select(ContractFuzzer.DefaultCases, 42).Select(c => c.Id).ToList();
        Assert.Equal(first, second);
        Assert.Equal(first.Count, first.Distinct().Count());
        var small = Fuzzer.Select(Fuzzer.Catalog.Methods.Count, 7);
        Assert.Equal(Fuzzer.Catalog.Methods.Count, small.Select(c => c.Rpc.FullName).Distinct().Count());
    }

    private static bool TryParse(Action parse)
    {
        try
        {
            parse();
            return true;
        }
        catch (Exception ex) when (ex is InvalidProtocolBufferException or InvalidJsonException or FormatException or ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }
}
