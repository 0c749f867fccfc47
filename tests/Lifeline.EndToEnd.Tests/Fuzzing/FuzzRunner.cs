using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>What one case got back, and what is wrong with that (null: nothing).</summary>
/// <param name="Status">gRPC status name (<c>INVALID_ARGUMENT</c>), <c>HTTP 400</c>, or <c>OPEN</c> for a watch stream still open at its deadline.</param>
/// <param name="Accepted">The call succeeded (OK, 2xx, or an open watch): it may have written.</param>
/// <param name="Failure">
/// UNKNOWN, INTERNAL, UNAVAILABLE, UNIMPLEMENTED, DEADLINE_EXCEEDED, HTTP_5XX; ACCEPTED_MALFORMED (unparseable input
/// accepted); NOT_INVALID_ARGUMENT (unparseable input refused with another status than INVALID_ARGUMENT / 400, or a
/// refusal the gateway makes first); NO_DETAILS (a gRPC refusal without BadRequest or ErrorInfo); WROTE_WHEN_REFUSED is
/// added by the store scan.
/// </param>
/// <param name="Started">When the call started, from the start of the run (to line failures up with each other).</param>
internal sealed record FuzzOutcome(FuzzCase Case, string Status, string Message, bool Accepted, string? Failure, TimeSpan Elapsed, TimeSpan Started = default);

/// <summary>
/// Sends cases through the gateway: gRPC as raw bytes (a <see cref="Method{TRequest,TResponse}"/> of byte arrays with the
/// RPC's full name, so any bytes can be sent), REST over HTTP/1.1, framing cases as raw HTTP/2 requests. Every call has
/// a deadline. Open-ended streams (Watch*) get a short one, and still being open at it means accepted.
/// </summary>
internal sealed class FuzzRunner : IDisposable
{
    public static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(20);
    public static readonly TimeSpan OpenStreamWindow = TimeSpan.FromSeconds(3);
    private const int MaxHeavyAtOnce = 2;
    private const int MaxStreamMessages = 1000;
    private const int MaxBodyBytes = 16 * 1024;

    private readonly GrpcChannel _channel;
    private readonly HttpClient _rest;
    private readonly HttpClient _http2;
    private readonly Uri _grpcBase;
    private readonly Uri _restBase;
    private readonly string _adminToken;
    private readonly string _workerToken;
    private readonly CallInvoker _admin;
    private readonly CallInvoker _worker;
    private readonly string _run;
    private readonly int _seed;
    private readonly IReadOnlyDictionary<string, string>? _opening;
    private readonly DateTimeOffset _now = DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds());

    /// <param name="adminToken">Bearer token (API key) of a platform admin: every RPC but the worker ones is called with it.</param>
    /// <param name="workerToken">Bearer token of a worker of the same tenant, for the worker RPCs.</param>
    /// <param name="opening">Values of a dispatch stream's opening message (<see cref="Baseline.Opening"/>).</param>
    public FuzzRunner(Uri grpcBase, Uri restBase, string adminToken, string workerToken, string run, int seed,
        IReadOnlyDictionary<string, string>? opening = null)
    {
        _opening = opening;
        _grpcBase = grpcBase;
        _restBase = restBase;
        _adminToken = adminToken;
        _workerToken = workerToken;
        _run = run;
        _seed = seed;
        // Own channel: no limit on what comes back (a refusal must not be masked by the client's 4 MiB default).
        _channel = GrpcChannel.ForAddress(grpcBase, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = null,
            MaxSendMessageSize = null,
            HttpHandler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true },
        });
        _admin = _channel.Intercept(metadata =>
        {
            metadata.Add("authorization", $"Bearer {adminToken}");
            return metadata;
        });
        _worker = _channel.Intercept(metadata =>
        {
            metadata.Add("authorization", $"Bearer {workerToken}");
            return metadata;
        });
        _rest = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, MaxConnectionsPerServer = 64 }) { Timeout = Timeout.InfiniteTimeSpan };
        _http2 = new HttpClient(new SocketsHttpHandler { EnableMultipleHttp2Connections = true }) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>The baseline of a case: its marker and a random source seeded by the run's seed and the case id.</summary>
    public Baseline BaselineOf(FuzzCase fuzzCase) =>
        new(ContractFuzzer.Marker(_run, fuzzCase.Id), new Random(unchecked((_seed * 1_000_003) + fuzzCase.Id)), _now) { Opening = _opening };

    /// <summary>When the last <see cref="RunAsync(IReadOnlyList{FuzzCase}, int, CancellationToken)"/> started: outcomes' and others' times count from it.</summary>
    public Stopwatch Clock { get; } = new();

    public async Task<IReadOnlyList<FuzzOutcome>> RunAsync(IReadOnlyList<FuzzCase> cases, int parallelism, CancellationToken cancellationToken)
    {
        var outcomes = new FuzzOutcome[cases.Count];
        Clock.Restart();
        using var heavy = new SemaphoreSlim(MaxHeavyAtOnce);
        await Parallel.ForEachAsync(Enumerable.Range(0, cases.Count),
            new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = cancellationToken },
            async (i, token) =>
            {
                var fuzzCase = cases[i];
                if (fuzzCase.Heavy)
                {
                    await heavy.WaitAsync(token);
                }

                try
                {
                    outcomes[i] = await RunAsync(fuzzCase, token);
                }
                finally
                {
                    if (fuzzCase.Heavy)
                    {
                        heavy.Release();
                    }
                }
            });
        return outcomes;
    }

    public async Task<FuzzOutcome> RunAsync(FuzzCase fuzzCase, CancellationToken cancellationToken)
    {
        var request = fuzzCase.Build(BaselineOf(fuzzCase));
        var worker = ContractFuzzer.IsWorkerRpc(fuzzCase.Rpc);
        var started = Clock.Elapsed;
        var stopwatch = Stopwatch.StartNew();
        var result = request switch
        {
            GrpcRequest grpc => await CallGrpcAsync(fuzzCase, grpc, worker ? _worker : _admin, cancellationToken),
            RestRequest rest => await CallRestAsync(fuzzCase, rest, worker ? _workerToken : _adminToken, cancellationToken),
            FramingRequest framing => await CallFramingAsync(fuzzCase, framing, worker ? _workerToken : _adminToken, cancellationToken),
            _ => throw new InvalidOperationException($"Unknown request {request.GetType().Name}."),
        };
        return result with { Elapsed = stopwatch.Elapsed, Started = started };
    }

    private async Task<FuzzOutcome> CallGrpcAsync(FuzzCase fuzzCase, GrpcRequest request, CallInvoker invoker, CancellationToken cancellationToken)
    {
        var method = RawRpc.Method(fuzzCase.Rpc.Descriptor);
        var type = method.Type;
        var options = new CallOptions(deadline: DateTime.UtcNow + (fuzzCase.IsOpenEnded ? OpenStreamWindow : CallDeadline), cancellationToken: cancellationToken);
        try
        {
            switch (type)
            {
                case MethodType.Unary:
                    await invoker.AsyncUnaryCall(method, null, options, request.Messages[0]).ResponseAsync;
                    break;
                case MethodType.ServerStreaming:
                {
                    using var call = invoker.AsyncServerStreamingCall(method, null, options, request.Messages[0]);
                    await ReadAsync(call.ResponseStream);
                    break;
                }

                case MethodType.ClientStreaming:
                {
                    using var call = invoker.AsyncClientStreamingCall(method, null, options);
                    await WriteAsync(call.RequestStream, request.Messages);
                    await call.ResponseAsync;
                    break;
                }

                default:
                {
                    using var call = invoker.AsyncDuplexStreamingCall(method, null, options);
                    await WriteAsync(call.RequestStream, request.Messages);
                    await ReadAsync(call.ResponseStream);
                    break;
                }
            }

            return Judge(fuzzCase, "OK", "", accepted: true, timedOut: false, hasDetails: true);
        }
        catch (RpcException ex)
        {
            if (ex.StatusCode == StatusCode.DeadlineExceeded && fuzzCase.IsOpenEnded)
            {
                return Judge(fuzzCase, "OPEN", "still open at the deadline", accepted: true, timedOut: false, hasDetails: true);
            }

            var status = StatusName(ex.StatusCode);
            return Judge(fuzzCase, status, ex.Status.Detail, accepted: false, timedOut: ex.StatusCode == StatusCode.DeadlineExceeded,
                hasDetails: HasRichDetails(ex.Trailers));
        }
    }

    private static async Task ReadAsync(IAsyncStreamReader<byte[]> responses)
    {
        var count = 0;
        while (count < MaxStreamMessages && await responses.MoveNext(CancellationToken.None))
        {
            count++;
        }
    }

    private static async Task WriteAsync(IClientStreamWriter<byte[]> requests, IReadOnlyList<byte[]> messages)
    {
        try
        {
            foreach (var message in messages)
            {
                await requests.WriteAsync(message);
            }

            await requests.CompleteAsync();
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            // The server answered before reading everything: its status is in the response.
        }
    }

    private async Task<FuzzOutcome> CallRestAsync(FuzzCase fuzzCase, RestRequest request, string token, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(fuzzCase.IsOpenEnded ? OpenStreamWindow : CallDeadline);
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), new Uri(_restBase.GetLeftPart(UriPartial.Authority) + request.PathAndQuery))
        {
            Version = HttpVersion.Version11,
        };
        message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        if (request.Body is not null)
        {
            message.Content = new ByteArrayContent(request.Body);
            message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        }

        HttpResponseMessage? response = null;
        try
        {
            response = await _rest.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            var body = await ReadPrefixAsync(response.Content, deadline.Token);
            var code = (int)response.StatusCode;
            return Judge(fuzzCase, $"HTTP {code}", body, accepted: code is >= 200 and < 300, timedOut: false, hasDetails: true, httpStatus: code);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            if (fuzzCase.IsOpenEnded)
            {
                return Judge(fuzzCase, "OPEN", "still open at the deadline", accepted: true, timedOut: false, hasDetails: true);
            }

            var status = response is null ? "no answer" : $"HTTP {(int)response.StatusCode}, body unfinished";
            return Judge(fuzzCase, "DEADLINE_EXCEEDED", status, accepted: false, timedOut: true, hasDetails: true);
        }
        catch (HttpRequestException ex)
        {
            return Judge(fuzzCase, "CONNECTION_ERROR", ex.Message, accepted: false, timedOut: false, hasDetails: true, httpStatus: 599);
        }
        finally
        {
            response?.Dispose();
        }
    }

    private async Task<FuzzOutcome> CallFramingAsync(FuzzCase fuzzCase, FramingRequest request, string token, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(fuzzCase.IsOpenEnded ? OpenStreamWindow : CallDeadline);
        using var message = new HttpRequestMessage(HttpMethod.Post, new Uri(_grpcBase, fuzzCase.Rpc.GrpcPath))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(request.Body),
        };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        message.Headers.TryAddWithoutValidation("te", "trailers");
        message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        try
        {
            using var response = await _http2.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
            await ReadPrefixAsync(response.Content, deadline.Token);
            var grpcStatus = Header(response.TrailingHeaders, "grpc-status") ?? Header(response.Headers, "grpc-status");
            var grpcMessage = Header(response.TrailingHeaders, "grpc-message") ?? Header(response.Headers, "grpc-message") ?? "";
            if (response.StatusCode != HttpStatusCode.OK || grpcStatus is null)
            {
                return Judge(fuzzCase, $"HTTP {(int)response.StatusCode}", grpcStatus is null ? "no grpc-status" : grpcMessage, accepted: false, timedOut: false, hasDetails: false);
            }

            var code = (StatusCode)int.Parse(grpcStatus, System.Globalization.CultureInfo.InvariantCulture);
            return Judge(fuzzCase, StatusName(code), Uri.UnescapeDataString(grpcMessage), accepted: code == StatusCode.OK, timedOut: false, hasDetails: false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return Judge(fuzzCase, "DEADLINE_EXCEEDED", "no answer", accepted: false, timedOut: true, hasDetails: false);
        }
        catch (HttpRequestException ex)
        {
            // A reset stream is a transport-level refusal of broken framing.
            return Judge(fuzzCase, "STREAM_RESET", ex.InnerException?.Message ?? ex.Message, accepted: false, timedOut: false, hasDetails: false);
        }
    }

    private static FuzzOutcome Judge(FuzzCase fuzzCase, string status, string message, bool accepted, bool timedOut, bool hasDetails, int httpStatus = 0)
    {
        string? failure = fuzzCase.Transport switch
        {
            _ when timedOut => "DEADLINE_EXCEEDED",
            FuzzTransport.Rest when httpStatus >= 500 => "HTTP_5XX",
            FuzzTransport.Grpc or FuzzTransport.Framing when status == "UNKNOWN" => "UNKNOWN",
            FuzzTransport.Grpc when status == "INTERNAL" => "INTERNAL",
            // What REST shows as 503/501: the service broke the call (the gateway could not forward it) or the route is missing.
            FuzzTransport.Grpc when status is "UNAVAILABLE" or "UNIMPLEMENTED" => status,
            _ when accepted && fuzzCase.Expectation is FuzzExpectation.Refusal or FuzzExpectation.FramingRefusal => "ACCEPTED_MALFORMED",
            // Unparseable input is refused as such, before anything is looked up: not NOT_FOUND because a random id was not.
            FuzzTransport.Grpc when fuzzCase.Expectation == FuzzExpectation.Refusal
                && status is not ("INVALID_ARGUMENT" or "PERMISSION_DENIED" or "UNAUTHENTICATED" or "RESOURCE_EXHAUSTED") => "NOT_INVALID_ARGUMENT",
            FuzzTransport.Rest when fuzzCase.Expectation == FuzzExpectation.Refusal && httpStatus is not (400 or 401 or 403 or 413 or 414 or 429 or 431) =>
                "NOT_INVALID_ARGUMENT",
            FuzzTransport.Grpc when !accepted && !hasDetails => "NO_DETAILS",
            _ => null,
        };
        return new FuzzOutcome(fuzzCase, status, Shorten(message), accepted, failure, TimeSpan.Zero);
    }

    /// <summary>True when grpc-status-details-bin holds a google.rpc.Status with a BadRequest or an ErrorInfo.</summary>
    public static bool HasRichDetails(Metadata trailers)
    {
        var bytes = trailers.Get("grpc-status-details-bin")?.ValueBytes;
        if (bytes is null)
        {
            return false;
        }

        try
        {
            var status = Google.Rpc.Status.Parser.ParseFrom(bytes);
            return status.Details.Any(d => d.Is(BadRequest.Descriptor) || d.Is(ErrorInfo.Descriptor));
        }
        catch (InvalidProtocolBufferException)
        {
            return false;
        }
    }

    public static string StatusName(StatusCode code) => code switch
    {
        StatusCode.OK => "OK",
        StatusCode.InvalidArgument => "INVALID_ARGUMENT",
        StatusCode.DeadlineExceeded => "DEADLINE_EXCEEDED",
        StatusCode.NotFound => "NOT_FOUND",
        StatusCode.AlreadyExists => "ALREADY_EXISTS",
        StatusCode.PermissionDenied => "PERMISSION_DENIED",
        StatusCode.ResourceExhausted => "RESOURCE_EXHAUSTED",
        StatusCode.FailedPrecondition => "FAILED_PRECONDITION",
        StatusCode.OutOfRange => "OUT_OF_RANGE",
        StatusCode.Unimplemented => "UNIMPLEMENTED",
        StatusCode.Unavailable => "UNAVAILABLE",
        StatusCode.DataLoss => "DATA_LOSS",
        StatusCode.Unauthenticated => "UNAUTHENTICATED",
        _ => code.ToString().ToUpperInvariant(),
    };

    private static async Task<string> ReadPrefixAsync(HttpContent content, CancellationToken cancellationToken)
    {
        await using var stream = await content.ReadAsStreamAsync(cancellationToken);
        var buffer = new byte[MaxBodyBytes];
        var total = 0;
        int read;
        while (total < MaxBodyBytes && (read = await stream.ReadAsync(buffer.AsMemory(total), cancellationToken)) > 0)
        {
            total += read;
        }

        // The rest is drained (to see the end of the response, and its trailers) but not kept.
        var scratch = new byte[8192];
        while (await stream.ReadAsync(scratch, cancellationToken) > 0)
        {
        }

        return Encoding.UTF8.GetString(buffer, 0, total);
    }

    private static string? Header(HttpHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    private static string Shorten(string message)
    {
        var flat = message.ReplaceLineEndings(" ");
        return flat.Length <= 300 ? flat : flat[..300] + "…";
    }

    public void Dispose()
    {
        _channel.Dispose();
        _rest.Dispose();
        _http2.Dispose();
    }
}
