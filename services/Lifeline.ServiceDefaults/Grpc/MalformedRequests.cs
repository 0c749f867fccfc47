using System.IO.Compression;
using System.Reflection;
using Grpc.AspNetCore.Server;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Grpc.Net.Compression;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Lifeline.ServiceDefaults.Grpc;

/// <summary>
/// A request whose bytes are not a valid message — a truncated varint, field number 0, a length past the end,
/// nesting beyond the parser's limit, gzip that does not inflate — is the caller's error: INVALID_ARGUMENT
/// with a BadRequest. grpc-dotnet decodes a request before any interceptor runs and answers UNKNOWN
/// ("Exception was thrown by handler.") for anything that is not an <see cref="RpcException"/>; so every
/// service method is bound with its request marshaller wrapped to throw the right status instead, and the
/// gzip decompressor likewise. (Framing errors grpc-dotnet itself detects — a message over the size limit,
/// a compressed flag without an encoding — keep grpc-dotnet's own RESOURCE_EXHAUSTED/INTERNAL answers.)
/// </summary>
public static class MalformedRequests
{
    /// <summary>Binds services through <see cref="GuardedServiceMethodProvider{TService}"/> instead of grpc-dotnet's own binder.</summary>
    public static IServiceCollection AddMalformedRequestHandling(this IServiceCollection services)
    {
        services.RemoveAll(d => d.ServiceType == typeof(IServiceMethodProvider<>)
                                && d.ImplementationType?.Name.StartsWith("BinderServiceMethodProvider", StringComparison.Ordinal) == true);
        services.TryAddEnumerable(ServiceDescriptor.Singleton(typeof(IServiceMethodProvider<>), typeof(GuardedServiceMethodProvider<>)));
        services.Configure<GrpcServiceOptions>(o =>
        {
            o.CompressionProviders.Clear();
            o.CompressionProviders.Add(new GuardedCompression(new GzipCompressionProvider(CompressionLevel.Fastest)));
        });
        return services;
    }

    private static void RemoveAll(this IServiceCollection services, Func<ServiceDescriptor, bool> match)
    {
        foreach (var descriptor in services.Where(match).ToList())
        {
            services.Remove(descriptor);
        }
    }

    /// <summary>The INVALID_ARGUMENT answer for a request that could not be decoded.</summary>
    public static RpcException Undecodable(string what, Exception cause) =>
        ErrorMappingInterceptor.ToRpcException(ValidationException.For("(request)",
            $"is not a valid {what}: {cause.Message}"));

    /// <summary>A marshaller that throws INVALID_ARGUMENT when the request bytes do not decode.</summary>
    public static Marshaller<T> Guarded<T>(Marshaller<T> inner) => new(inner.ContextualSerializer, context =>
    {
        try
        {
            return inner.ContextualDeserializer(context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Undecodable($"protobuf encoding of {typeof(T).Name}", ex);
        }
    });

    /// <summary>The same method with its request marshaller guarded.</summary>
    public static Method<TRequest, TResponse> Guarded<TRequest, TResponse>(Method<TRequest, TResponse> method)
        where TRequest : class where TResponse : class =>
        new(method.Type, method.ServiceName, method.Name, Guarded(method.RequestMarshaller), method.ResponseMarshaller);

    private sealed class GuardedCompression(ICompressionProvider inner) : ICompressionProvider
    {
        public string EncodingName => inner.EncodingName;

        public Stream CreateCompressionStream(Stream stream, CompressionLevel? compressionLevel) =>
            inner.CreateCompressionStream(stream, compressionLevel);

        public Stream CreateDecompressionStream(Stream stream) => new GuardedStream(inner.CreateDecompressionStream(stream), EncodingName);
    }

    /// <summary>A decompression stream whose failures are the caller's: INVALID_ARGUMENT.</summary>
    private sealed class GuardedStream(Stream inner, string encoding) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            try
            {
                return inner.Read(buffer, offset, count);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException)
            {
                throw Undecodable($"{encoding} stream", ex);
            }
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try
            {
                return await inner.ReadAsync(buffer, cancellationToken);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException)
            {
                throw Undecodable($"{encoding} stream", ex);
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}

/// <summary>
/// Binds a generated gRPC service (its static <c>BindService</c>) as grpc-dotnet's own binder does, but with
/// every request marshaller wrapped by <see cref="MalformedRequests.Guarded{T}"/>.
/// </summary>
public sealed class GuardedServiceMethodProvider<TService> : IServiceMethodProvider<TService> where TService : class
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<TService> context)
    {
        var bind = FindBindMethod(typeof(TService));
        if (bind is null)
        {
            return;
        }
        var binder = new Binder(context, bind.GetParameters()[1].ParameterType);
        bind.Invoke(null, [binder, null]);
    }

    // Generated service bases carry [BindServiceMethod(typeof(X), "BindService")].
    private static MethodInfo? FindBindMethod(Type type)
    {
        for (var current = type; current is not null; current = current.BaseType)
        {
            if (current.GetCustomAttribute<BindServiceMethodAttribute>(inherit: false) is { } attribute)
            {
                return attribute.BindType.GetMethods(BindingFlags.Public | BindingFlags.Static)
                    .FirstOrDefault(m => m.Name == attribute.BindMethodName && m.GetParameters().Length == 2
                                         && m.GetParameters()[0].ParameterType == typeof(ServiceBinderBase));
            }
        }
        return null;
    }

    private sealed class Binder(ServiceMethodProviderContext<TService> context, Type declaringType) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
        {
            var (invoker, metadata) = Create<UnaryServerMethod<TService, TRequest, TResponse>>(method.Name, [typeof(TRequest), typeof(ServerCallContext)]);
            context.AddUnaryMethod(MalformedRequests.Guarded(method), metadata, invoker);
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler)
        {
            var (invoker, metadata) = Create<ServerStreamingServerMethod<TService, TRequest, TResponse>>(
                method.Name, [typeof(TRequest), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext)]);
            context.AddServerStreamingMethod(MalformedRequests.Guarded(method), metadata, invoker);
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler)
        {
            var (invoker, metadata) = Create<ClientStreamingServerMethod<TService, TRequest, TResponse>>(
                method.Name, [typeof(IAsyncStreamReader<TRequest>), typeof(ServerCallContext)]);
            context.AddClientStreamingMethod(MalformedRequests.Guarded(method), metadata, invoker);
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler)
        {
            var (invoker, metadata) = Create<DuplexStreamingServerMethod<TService, TRequest, TResponse>>(
                method.Name, [typeof(IAsyncStreamReader<TRequest>), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext)]);
            context.AddDuplexStreamingMethod(MalformedRequests.Guarded(method), metadata, invoker);
        }

        private (TDelegate Invoker, List<object> Metadata) Create<TDelegate>(string name, Type[] parameters) where TDelegate : Delegate
        {
            var handler = FindOverride(name, parameters)
                          ?? throw new InvalidOperationException($"Could not find '{name}' on {typeof(TService)}.");
            var metadata = new List<object>();
            metadata.AddRange(typeof(TService).GetCustomAttributes(inherit: true));
            metadata.AddRange(handler.GetCustomAttributes(inherit: true));
            metadata.Add(new HttpMethodMetadata(["POST"], acceptCorsPreflight: true));
            return ((TDelegate)Delegate.CreateDelegate(typeof(TDelegate), handler), metadata);
        }

        // The service's override of the generated virtual method (a method hiding it by name is skipped).
        private MethodInfo? FindOverride(string name, Type[] parameters)
        {
            for (var type = typeof(TService); type is not null; type = type.BaseType)
            {
                var method = type.GetMethod(name, BindingFlags.Public | BindingFlags.Instance, null, parameters, null);
                if (method is null)
                {
                    return null;
                }
                if (method.IsVirtual && method.GetBaseDefinition().DeclaringType == declaringType)
                {
                    return method;
                }
            }
            return null;
        }
    }
}
