import { Field, Int, ObjectType } from '@nestjs/graphql';

@ObjectType({ description: "Today's playground requests of the workspace (UTC days)." })
export class PlaygroundQuota {
  @Field(() => Int, { nullable: true, description: 'Requests allowed a day; null: unlimited (Pro and up).' }) limit!: number | null;
  @Field(() => Int) used!: number;
  @Field(() => Int, { nullable: true }) remaining!: number | null;
  @Field({ description: 'When the count starts again (00:00 UTC).' }) resetsAt!: Date;
}
