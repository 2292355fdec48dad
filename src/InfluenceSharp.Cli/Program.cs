InfluenceSharp.Native.Allocator.KeepFreedMemory();
return InfluenceSharp.Cli.Cli.Run(args);
